#[nstest::test(flavor = "green")]
fn t() {}

nstest::main!();
