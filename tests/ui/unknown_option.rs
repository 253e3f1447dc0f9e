#[nstest::test(hostnme = "box")]
fn t() {}

nstest::main!();
