#[nstest::test(env = ["NO_EQUALS"])]
fn t() {}

nstest::main!();
