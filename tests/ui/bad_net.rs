#[nstest::test(net = "bridge")]
fn t() {}

nstest::main!();
