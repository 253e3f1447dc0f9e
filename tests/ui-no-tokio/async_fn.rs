#[nstest::test]
async fn t() {}

nstest::main!();
