#[nstest::test(bind = ["data:relative"])]
fn t() {}

nstest::main!();
