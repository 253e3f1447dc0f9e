#[nstest::test(bind = "data:/data")]
fn t() {}

nstest::main!();
