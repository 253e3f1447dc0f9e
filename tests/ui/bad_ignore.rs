#[nstest::test]
#[ignore(reason = "x")]
fn t() {}

fn main() {}
