#[nstest::test]
#[should_panic(expect = "typo")]
fn t() {}

nstest::main!();
