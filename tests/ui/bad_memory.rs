#[nstest::test(memory = "64MB")]
fn t() {}

nstest::main!();
