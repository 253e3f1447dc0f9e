//! What `#[nstest::test]` emits: one static [`TestDesc`] per test, collected at link time into
//! [`TESTS`] (no list to maintain), and read by the harness and by the container child.

use std::fmt::Debug;

/// How a test expects to panic (`#[should_panic]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShouldPanic {
    /// No `#[should_panic]`.
    No,
    /// `#[should_panic]`.
    Yes,
    /// `#[should_panic(expected = "...")]`: the message must contain this.
    YesWithMessage(&'static str),
}

/// One test, as the attribute describes it. Generated code only; not a stable API.
#[derive(Debug)]
pub struct TestDesc {
    /// `module_path!()` where the test is defined.
    pub module_path: &'static str,
    /// The function's name.
    pub fn_name: &'static str,
    /// Calls the test; `Err` holds the `{:?}` of a returned error.
    pub run: fn() -> Result<(), String>,
    /// `#[ignore]`.
    pub ignore: bool,
    /// `#[ignore = "reason"]`: the reason.
    pub ignore_reason: Option<&'static str>,
    /// `#[should_panic]`.
    pub should_panic: ShouldPanic,
    /// `hostname = "..."`.
    pub hostname: Option<&'static str>,
    /// `rootfs = "..."`.
    pub rootfs: Option<&'static str>,
    /// `net = "loopback" | "host"`.
    pub net: crate::spec::Net,
    /// `memory = "64M"`, in bytes.
    pub memory: Option<u64>,
    /// `pids = 64`.
    pub pids: Option<u64>,
    /// `cpus = 0.5`.
    pub cpus: Option<f64>,
    /// `timeout = "..."`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `bind = ["host:/container[:ro|:rw]", ...]`.
    pub bind: &'static [&'static str],
    /// `env = ["KEY=value", ...]`.
    pub env: &'static [&'static str],
    /// `workdir = "/path"`.
    pub workdir: Option<&'static str>,
    /// `package = false | true`: whether the package is shown inside (default: the run's
    /// `NSTEST_PACKAGE`, else shown).
    pub package: Option<bool>,
    /// `env!("CARGO_MANIFEST_DIR")` of the package that defines the test.
    pub manifest_dir: &'static str,
    /// `option_env!("CARGO_TARGET_TMPDIR")`: set where cargo builds integration tests.
    pub target_tmpdir: Option<&'static str>,
}

impl TestDesc {
    /// The name libtest would give it: the module path without the crate, then the function.
    pub fn name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, rest)) => format!("{rest}::{}", self.fn_name),
            None => self.fn_name.to_string(),
        }
    }

    /// Whether [`TestDesc::name`] is `name`, without building it (a container looks its test up
    /// among all of the binary's).
    fn is_named(&self, name: &str) -> bool {
        let Some(prefix) = name.strip_suffix(self.fn_name) else {
            return false;
        };
        match self.module_path.split_once("::") {
            Some((_, rest)) => prefix.strip_suffix("::") == Some(rest),
            None => prefix.is_empty(),
        }
    }
}

/// Every `#[nstest::test]` linked into this binary.
#[linkme::distributed_slice]
pub static TESTS: [TestDesc];

/// The registered tests with their names, sorted by name as libtest sorts them.
pub fn tests() -> Vec<(String, &'static TestDesc)> {
    let mut v: Vec<_> = TESTS.iter().map(|d| (d.name(), d)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The registered test called `name`.
pub fn find(name: &str) -> Option<&'static TestDesc> {
    TESTS.iter().find(|d| d.is_named(name))
}

/// The return types a test may have: `()` or `Result<(), E: Debug>`, as with `#[test]`.
pub trait TestResult {
    /// `Err` holds the error formatted with `{:?}`.
    fn into_result(self) -> Result<(), String>;
}

impl TestResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> TestResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{ShouldPanic, TestDesc};

    fn desc(module_path: &'static str, fn_name: &'static str) -> TestDesc {
        TestDesc {
            module_path,
            fn_name,
            run: || Ok(()),
            ignore: false,
            ignore_reason: None,
            should_panic: ShouldPanic::No,
            hostname: None,
            rootfs: None,
            net: crate::spec::Net::Loopback,
            memory: None,
            pids: None,
            cpus: None,
            timeout_ms: None,
            bind: &[],
            env: &[],
            workdir: None,
            package: None,
            manifest_dir: "",
            target_tmpdir: None,
        }
    }

    #[test]
    fn a_test_is_named_as_libtest_names_it_and_found_by_that_name_only() {
        let nested = desc("krate::a::b", "t");
        assert_eq!(nested.name(), "a::b::t");
        assert!(nested.is_named("a::b::t"));
        for other in ["b::t", "a::bt", "t", "a::b::tt", "x::a::b::t", "a::b::", ""] {
            assert!(!nested.is_named(other), "{other}");
        }
        let top = desc("krate", "t");
        assert_eq!(top.name(), "t");
        assert!(top.is_named("t"));
        assert!(!top.is_named("krate::t") && !top.is_named("::t"));
    }
}
