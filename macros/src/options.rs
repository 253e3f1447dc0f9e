//! The options of `#[nstest::test(...)]`: one function per kind of value (a string read by
//! nstest's grammar, an array of strings, an integer, a number, a bool) and [`option`], which
//! maps each option's name to its kind and slot.
//!
//! Every error is at the offending span: a value that does not parse at the value, an option
//! given twice over the second one, an unknown option at its name.

use nstest_grammar as grammar;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr};

/// The attribute's options, validated.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub hostname: Option<String>,
    pub rootfs: Option<String>,
    pub timeout_ms: Option<u64>,
    pub host_net: Option<bool>,
    /// `flavor = "multi_thread"` (true) or `"current_thread"` (false), for `async fn` tests.
    pub multi_thread: Option<bool>,
    /// `memory = "64M"`, in bytes.
    pub memory: Option<u64>,
    /// `pids = 64`.
    pub pids: Option<u64>,
    /// `cpus = 0.5`.
    pub cpus: Option<f64>,
    /// `bind = ["host:/container[:ro|:rw]", ...]`.
    pub bind: Option<Vec<String>>,
    /// `env = ["KEY=value", ...]`.
    pub env: Option<Vec<String>>,
    /// `workdir = "/path"`.
    pub workdir: Option<String>,
    /// `package = false`: the package is not shown inside (default: shown, read-only).
    pub package: Option<bool>,
}

/// Parses the option list inside `#[nstest::test(...)]`.
#[cfg(test)]
pub fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    parse_options_spanned(attr).map(|(o, _)| o)
}

/// [`parse_options`], with the span of the `flavor` value if there is one.
pub fn parse_options_spanned(attr: TokenStream) -> syn::Result<(Options, Option<Span>)> {
    let mut opts = Options::default();
    let mut flavor_span = None;
    syn::meta::parser(|meta| option(&meta, &mut opts, &mut flavor_span)).parse2(attr)?;
    Ok((opts, flavor_span))
}

/// One `name = value`: the option's kind reads the value, which then goes to its slot.
fn option(
    meta: &ParseNestedMeta,
    opts: &mut Options,
    flavor_span: &mut Option<Span>,
) -> syn::Result<()> {
    let name = meta
        .path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_default();
    let name = name.as_str();
    match name {
        "hostname" => {
            let v = string(meta, |s| validate_hostname(s).map(|()| s.to_owned()))?;
            set_once(&mut opts.hostname, v, meta, name)
        }
        "rootfs" => set_once(&mut opts.rootfs, string(meta, rootfs)?, meta, name),
        "net" => set_once(&mut opts.host_net, string(meta, host_net)?, meta, name),
        "workdir" => set_once(&mut opts.workdir, string(meta, workdir)?, meta, name),
        "timeout" => set_once(
            &mut opts.timeout_ms,
            string(meta, parse_duration_ms)?,
            meta,
            name,
        ),
        "memory" => set_once(&mut opts.memory, string(meta, parse_bytes)?, meta, name),
        "flavor" => {
            // A string, as `string` reads it, whose span `expand` keeps: `flavor` on a test
            // that is not an `async fn` is an error there.
            let lit: LitStr = meta.value()?.parse()?;
            let multi = checked(&lit, multi_thread)?;
            set_once(&mut opts.multi_thread, multi, meta, name)?;
            *flavor_span = Some(lit.span());
            Ok(())
        }
        "bind" => set_once(
            &mut opts.bind,
            strings(meta, name, validate_bind)?,
            meta,
            name,
        ),
        "env" => set_once(
            &mut opts.env,
            strings(meta, name, validate_env)?,
            meta,
            name,
        ),
        "pids" => set_once(&mut opts.pids, integer(meta, pids)?, meta, name),
        "cpus" => {
            const EXPECTED: &str = "expected a number of CPUs, e.g. `cpus = 0.5`";
            set_once(&mut opts.cpus, number(meta, EXPECTED, cpus)?, meta, name)
        }
        "package" => {
            const EXPECTED: &str = "expected `package = false` (the package is not shown inside) or `package = true` (the default)";
            set_once(&mut opts.package, boolean(meta, EXPECTED)?, meta, name)
        }
        _ => Err(unknown(meta)),
    }
}

/// Puts an option's value in its slot; the second of an option given twice is an error (over
/// `name = value`, the value having been read).
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta,
    name: &str,
) -> syn::Result<()> {
    match slot.replace(value) {
        Some(_) => Err(meta.error(format_args!("`{name}` is given twice"))),
        None => Ok(()),
    }
}

/// An option that is not one: an error over its name (`a::b` spelt as written).
fn unknown(meta: &ParseNestedMeta) -> syn::Error {
    let p = &meta.path;
    meta.error(format_args!(
        "unknown nstest option `{}`: expected `hostname`, `rootfs`, `timeout`, `net`, `memory`, `pids`, `cpus`, `bind`, `env`, `workdir`, `package` or `flavor`",
        quote!(#p).to_string().replace(' ', "")
    ))
}

// The kinds of value. Each reads `= value` and gives what `check` makes of it, or an error at
// the value.

/// A string literal, read by `check`.
fn string<T>(
    meta: &ParseNestedMeta,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> syn::Result<T> {
    let lit: LitStr = meta.value()?.parse()?;
    checked(&lit, check)
}

/// `check` applied to a string literal's value; its error at the literal.
fn checked<T>(lit: &LitStr, check: impl FnOnce(&str) -> Result<T, String>) -> syn::Result<T> {
    check(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))
}

/// An array of string literals (`name = ["…", "…"]`), each one checked.
fn strings(
    meta: &ParseNestedMeta,
    name: &str,
    check: fn(&str) -> Result<(), String>,
) -> syn::Result<Vec<String>> {
    let value: Expr = meta.value()?.parse()?;
    let Expr::Array(array) = value else {
        return Err(syn::Error::new(
            value.span(),
            format!("expected an array of strings: `{name} = [\"…\", \"…\"]`"),
        ));
    };
    let mut items = Vec::new();
    for elem in &array.elems {
        let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = elem
        else {
            return Err(syn::Error::new(elem.span(), "expected a string literal"));
        };
        checked(lit, check)?;
        items.push(lit.value());
    }
    Ok(items)
}

/// A whole number literal, read by `check`.
fn integer(meta: &ParseNestedMeta, check: fn(u64) -> Result<u64, String>) -> syn::Result<u64> {
    let lit: syn::LitInt = meta.value()?.parse()?;
    let n: u64 = lit.base10_parse()?;
    check(n).map_err(|m| syn::Error::new(lit.span(), m))
}

/// A number literal, whole or not, read by `check`; anything else is `expected`.
fn number(
    meta: &ParseNestedMeta,
    expected: &str,
    check: fn(f64) -> Result<f64, String>,
) -> syn::Result<f64> {
    let value: Lit = meta.value()?.parse()?;
    let n = match &value {
        Lit::Float(f) => f.base10_parse::<f64>()?,
        Lit::Int(i) => i.base10_parse::<u64>()? as f64,
        other => return Err(syn::Error::new(other.span(), expected)),
    };
    check(n).map_err(|m| syn::Error::new(value.span(), m))
}

/// `true` or `false`; anything else is `expected`.
fn boolean(meta: &ParseNestedMeta, expected: &str) -> syn::Result<bool> {
    let lit: syn::LitBool = meta
        .value()?
        .parse()
        .map_err(|e: syn::Error| syn::Error::new(e.span(), expected))?;
    Ok(lit.value)
}

// The values, each read by nstest's one grammar (`nstest-grammar`) where the run time reads it
// too, with the grammar's fix in the message.

/// `"500ms"`, `"10s"`, `"2m"` in milliseconds, by nstest's one grammar (`nstest-grammar`).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    grammar::duration_ms(s)
        .ok_or_else(|| format!("invalid timeout {s:?}: {}", grammar::DURATION_FIX))
}

/// `"64M"`, `"1G"`, `"512K"` or plain bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    grammar::bytes(s).ok_or_else(|| format!("invalid memory size {s:?}: {}", grammar::BYTES_FIX))
}

/// `"host:/container[:ro|:rw]"`.
pub fn validate_bind(s: &str) -> Result<(), String> {
    match grammar::bind(s) {
        Some(_) => Ok(()),
        None => Err(format!("invalid bind {s:?}: {}", grammar::BIND_FIX)),
    }
}

/// `"KEY=value"`.
pub fn validate_env(s: &str) -> Result<(), String> {
    match grammar::env(s) {
        Some(_) => Ok(()),
        None => Err(format!("invalid env {s:?}: {}", grammar::ENV_FIX)),
    }
}

/// One DNS label.
pub fn validate_hostname(s: &str) -> Result<(), String> {
    if grammar::hostname(s) {
        Ok(())
    } else {
        Err(format!("invalid hostname {s:?}: {}", grammar::HOSTNAME_FIX))
    }
}

/// A rootfs the run time can name (`builtin:busybox`, a tarball, `oci:dir[:tag]`, …).
fn rootfs(s: &str) -> Result<String, String> {
    match grammar::rootfs(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!("invalid rootfs {s:?}: {}", grammar::ROOTFS_FIX)),
    }
}

/// `"loopback"` (false) or `"host"` (true).
fn host_net(s: &str) -> Result<bool, String> {
    grammar::host_net(s).ok_or_else(|| format!("invalid net {s:?}: {}", grammar::NET_FIX))
}

/// An absolute path without `..`.
fn workdir(s: &str) -> Result<String, String> {
    if grammar::workdir(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("invalid workdir {s:?}: {}", grammar::WORKDIR_FIX))
    }
}

/// `"current_thread"` (false) or `"multi_thread"` (true).
fn multi_thread(s: &str) -> Result<bool, String> {
    match s {
        "current_thread" => Ok(false),
        "multi_thread" => Ok(true),
        other => Err(format!(
            "invalid flavor {other:?}: use \"current_thread\" (the default) or \"multi_thread\""
        )),
    }
}

/// A pids limit: 1 or more.
fn pids(n: u64) -> Result<u64, String> {
    if n == 0 {
        Err("a pids limit of 0 would stop the test itself: use 1 or more".to_owned())
    } else {
        Ok(n)
    }
}

/// A cpus limit: above 0 (and finite).
fn cpus(c: f64) -> Result<f64, String> {
    if c > 0.0 && c.is_finite() {
        Ok(c)
    } else {
        Err("the cpus limit must be above 0".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = parse_options(quote!(
            hostname = "box",
            timeout = "10s",
            rootfs = "r.tar.gz"
        ))
        .unwrap();
        assert_eq!(
            o,
            Options {
                hostname: Some("box".into()),
                rootfs: Some("r.tar.gz".into()),
                timeout_ms: Some(10_000),
                host_net: None,
                multi_thread: None,
                memory: None,
                pids: None,
                cpus: None,
                bind: None,
                env: None,
                workdir: None,
                package: None,
            }
        );
        assert_eq!(parse_options(quote!()).unwrap(), Options::default());
        assert_eq!(
            parse_options(quote!(timeout = "500ms")).unwrap().timeout_ms,
            Some(500)
        );
        assert_eq!(
            parse_options(quote!(timeout = "2m")).unwrap().timeout_ms,
            Some(120_000)
        );
    }

    #[test]
    fn bad_options_are_errors_with_a_reason() {
        let err = |t: TokenStream| parse_options(t).unwrap_err().to_string();
        assert!(err(quote!(hostnme = "x")).contains("unknown nstest option `hostnme`"));
        assert!(err(quote!(timeout = "10")).contains("invalid timeout"));
        assert!(err(quote!(timeout = 10)).contains("expected string literal"));
        assert!(err(quote!(hostname = "a_b")).contains("invalid hostname"));
        assert!(err(quote!(hostname = "a", hostname = "b")).contains("given twice"));
        assert!(err(quote!(rootfs = "")).contains("invalid rootfs \"\""));
        assert!(err(quote!(rootfs = "builtin:busybx")).contains("invalid rootfs"));
        assert!(err(quote!(rootfs = "oci:")).contains("invalid rootfs"));
        assert!(err(quote!(net = "bridge")).contains("invalid net"));
        assert!(err(quote!(memory = "64MB")).contains("invalid memory size"));
        assert!(err(quote!(pids = 0)).contains("pids limit of 0"));
        assert!(err(quote!(cpus = 0.0)).contains("above 0"));
        assert!(err(quote!(cpus = "half")).contains("number of CPUs"));
        assert!(err(quote!(bind = ["data"])).contains("invalid bind"));
        assert!(err(quote!(bind = "a:/b")).contains("expected an array of strings: `bind = ["));
        assert!(err(quote!(env = ["1X=y"])).contains("invalid env"));
        assert!(err(quote!(env = [KEY])).contains("string literal"));
        assert!(err(quote!(workdir = "rel")).contains("invalid workdir"));
        assert!(err(quote!(package = "no")).contains("expected `package = false`"));
        assert_eq!(
            parse_options(quote!(package = false)).unwrap().package,
            Some(false)
        );
        let o = parse_options(quote!(
            bind = ["d:/d", "/e:/f:rw"],
            env = ["A=b"],
            workdir = "/w"
        ))
        .unwrap();
        assert_eq!(
            o.bind,
            Some(vec!["d:/d".to_string(), "/e:/f:rw".to_string()])
        );
        assert_eq!(
            (o.env, o.workdir),
            (Some(vec!["A=b".to_string()]), Some("/w".to_string()))
        );
        let o = parse_options(quote!(memory = "64M", pids = 32, cpus = 0.5)).unwrap();
        assert_eq!(
            (o.memory, o.pids, o.cpus),
            (Some(64 << 20), Some(32), Some(0.5))
        );
    }
}
