#[nstest::test]
#[should_panic]
#[should_panic(expected = "boom")]
fn t() {}

nstest::main!();
