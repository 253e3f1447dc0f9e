//! Misuse of `#[nstest::test]` is a compile error at the offending span (trybuild).

#[test]
fn attribute_misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    if !cfg!(feature = "tokio") {
        // `async fn` without the feature that gives it a runtime.
        t.compile_fail("tests/ui-no-tokio/*.rs");
    }
}
