#[nstest::test(cpus = 0.0)]
fn t() {}

nstest::main!();
