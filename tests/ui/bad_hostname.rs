#[nstest::test(hostname = "not_valid!")]
fn t() {}

nstest::main!();
