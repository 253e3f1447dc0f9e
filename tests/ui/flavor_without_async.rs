#[nstest::test(flavor = "multi_thread")]
fn t() {}

nstest::main!();
