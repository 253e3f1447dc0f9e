#[nstest::test]
fn t() -> u32 { 1 }

nstest::main!();
