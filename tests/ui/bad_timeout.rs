#[nstest::test(timeout = "10 seconds")]
fn t() {}

nstest::main!();
