#[nstest::test]
fn t(x: u32) { let _ = x; }

nstest::main!();
