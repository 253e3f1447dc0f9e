//! The `#[nstest::test]` attribute. Use it through the `nstest` crate; the expansion lives in
//! plain functions that unit tests call: `options` reads the attribute's options, `attrs` the
//! test attributes on the function (`#[should_panic]`, `#[ignore]`), `expand` generates the code.

mod attrs;
mod expand;
mod options;

use proc_macro::TokenStream;

/// Runs the function as an isolated test: PID 1 of fresh namespaces over a throwaway rootfs.
///
/// Options: `hostname = "…"`, `rootfs = "…"`, `timeout = "500ms" | "10s" | "2m"`,
/// `net = "loopback" | "host"`, `memory = "64M"`, `pids = 32`, `cpus = 0.5`,
/// `bind = ["host:/container", "host:/container:rw"]`, `env = ["KEY=value"]`,
/// `workdir = "/abs"`, `package = false` (the package's directory and build outputs, shown
/// read-only by default, are not), and for `async fn` tests (nstest's `tokio` feature)
/// `flavor = "current_thread" | "multi_thread"`. Combine with
/// `#[should_panic]`, `#[should_panic(expected = "…")]`, `#[ignore]` and `#[ignore = "…"]` as
/// with `#[test]`.
/// A misspelt option or a value that does not parse is a compile error at its span.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into(), cfg!(feature = "tokio"))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
