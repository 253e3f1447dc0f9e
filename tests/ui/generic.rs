#[nstest::test]
fn t<T: Default>() { let _ = T::default(); }

nstest::main!();
