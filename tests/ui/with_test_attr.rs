#[nstest::test]
#[test]
fn t() {}

nstest::main!();
