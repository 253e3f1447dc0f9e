#[nstest::test(cpus = "half")]
fn t() {}

nstest::main!();
