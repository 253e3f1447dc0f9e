#[nstest::test(pids = 0)]
fn t() {}

nstest::main!();
