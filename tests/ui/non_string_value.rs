#[nstest::test(timeout = 10)]
fn t() {}

nstest::main!();
