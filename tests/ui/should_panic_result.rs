#[nstest::test]
#[should_panic]
fn t() -> Result<(), String> { Ok(()) }

nstest::main!();
