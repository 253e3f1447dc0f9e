#[nstest::test(workdir = "relative/dir")]
fn t() {}

nstest::main!();
