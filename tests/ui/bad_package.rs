#[nstest::test(package = "no")]
fn t() {}

fn main() {}
