#[nstest::test(env = [KEY])]
fn t() {}

nstest::main!();
