#[nstest::test(rootfs = "builtin:busybx")]
fn t() {}

nstest::main!();
