#[nstest::test(rootfs = "")]
fn t() {}

nstest::main!();
