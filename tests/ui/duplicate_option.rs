#[nstest::test(timeout = "1s", timeout = "2s")]
fn t() {}

nstest::main!();
