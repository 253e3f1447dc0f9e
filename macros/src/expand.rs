//! Parsing of `#[nstest::test(...)]` and the code it generates.
//!
//! Generated code names everything by absolute path (`::nstest::…`, `::core::…`) so that it
//! compiles whatever the user has in scope.

use nstest_grammar as grammar;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ItemFn, Lit, LitStr, Meta, ReturnType};

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

/// What `#[should_panic]` says.
#[derive(Debug, PartialEq)]
pub enum ShouldPanic {
    No,
    Yes,
    WithMessage(String),
}

/// Parses the option list inside `#[nstest::test(...)]`.
#[cfg(test)]
pub fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    parse_options_spanned(attr).map(|(o, _)| o)
}

/// [`parse_options`], with the span of the `flavor` value if there is one.
fn parse_options_spanned(attr: TokenStream) -> syn::Result<(Options, Option<Span>)> {
    let mut opts = Options::default();
    let mut flavor_span = None;
    let parser = syn::meta::parser(|meta| {
        let name = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let dup = || meta.error(format_args!("`{name}` is given twice"));
        match name.as_str() {
            "hostname" => {
                let lit: LitStr = meta.value()?.parse()?;
                validate_hostname(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))?;
                if opts.hostname.replace(lit.value()).is_some() {
                    return Err(dup());
                }
            }
            "rootfs" => {
                let lit: LitStr = meta.value()?.parse()?;
                if grammar::rootfs(&lit.value()).is_none() {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("invalid rootfs {:?}: {}", lit.value(), grammar::ROOTFS_FIX),
                    ));
                }
                if opts.rootfs.replace(lit.value()).is_some() {
                    return Err(dup());
                }
            }
            "net" => {
                let lit: LitStr = meta.value()?.parse()?;
                let Some(host) = grammar::host_net(&lit.value()) else {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("invalid net {:?}: {}", lit.value(), grammar::NET_FIX),
                    ));
                };
                if opts.host_net.replace(host).is_some() {
                    return Err(dup());
                }
            }
            "bind" | "env" => {
                let value: Expr = meta.value()?.parse()?;
                let Expr::Array(array) = value else {
                    return Err(syn::Error::new(
                        value.span(),
                        format!("expected an array of strings: `{name} = [\"…\", \"…\"]`"),
                    ));
                };
                let mut items = Vec::new();
                for elem in &array.elems {
                    let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = elem else {
                        return Err(syn::Error::new(elem.span(), "expected a string literal"));
                    };
                    let v = lit.value();
                    let check = if name == "bind" { validate_bind(&v) } else { validate_env(&v) };
                    check.map_err(|m| syn::Error::new(lit.span(), m))?;
                    items.push(v);
                }
                let slot = if name == "bind" { &mut opts.bind } else { &mut opts.env };
                if slot.replace(items).is_some() {
                    return Err(dup());
                }
            }
            "workdir" => {
                let lit: LitStr = meta.value()?.parse()?;
                let v = lit.value();
                if !grammar::workdir(&v) {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("invalid workdir {v:?}: {}", grammar::WORKDIR_FIX),
                    ));
                }
                if opts.workdir.replace(v).is_some() {
                    return Err(dup());
                }
            }
            "package" => {
                let lit: syn::LitBool = meta.value()?.parse().map_err(|e: syn::Error| {
                    syn::Error::new(
                        e.span(),
                        "expected `package = false` (the package is not shown inside) or `package = true` (the default)",
                    )
                })?;
                if opts.package.replace(lit.value).is_some() {
                    return Err(dup());
                }
            }
            "memory" => {
                let lit: LitStr = meta.value()?.parse()?;
                let bytes = parse_bytes(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))?;
                if opts.memory.replace(bytes).is_some() {
                    return Err(dup());
                }
            }
            "pids" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let n: u64 = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(lit.span(), "a pids limit of 0 would stop the test itself: use 1 or more"));
                }
                if opts.pids.replace(n).is_some() {
                    return Err(dup());
                }
            }
            "cpus" => {
                let value: syn::Lit = meta.value()?.parse()?;
                let cpus = match &value {
                    syn::Lit::Float(f) => f.base10_parse::<f64>()?,
                    syn::Lit::Int(i) => i.base10_parse::<u64>()? as f64,
                    other => return Err(syn::Error::new(other.span(), "expected a number of CPUs, e.g. `cpus = 0.5`")),
                };
                if !(cpus > 0.0 && cpus.is_finite()) {
                    return Err(syn::Error::new(value.span(), "the cpus limit must be above 0"));
                }
                if opts.cpus.replace(cpus).is_some() {
                    return Err(dup());
                }
            }
            "flavor" => {
                let lit: LitStr = meta.value()?.parse()?;
                let multi = match lit.value().as_str() {
                    "current_thread" => false,
                    "multi_thread" => true,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!("invalid flavor {other:?}: use \"current_thread\" (the default) or \"multi_thread\""),
                        ))
                    }
                };
                if opts.multi_thread.replace(multi).is_some() {
                    return Err(dup());
                }
                flavor_span = Some(lit.span());
            }
            "timeout" => {
                let lit: LitStr = meta.value()?.parse()?;
                let ms =
                    parse_duration_ms(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))?;
                if opts.timeout_ms.replace(ms).is_some() {
                    return Err(dup());
                }
            }
            _ => {
                return Err(meta.error(format_args!(
                    "unknown nstest option `{}`: expected `hostname`, `rootfs`, `timeout`, `net`, `memory`, `pids`, `cpus`, `bind`, `env`, `workdir`, `package` or `flavor`",
                    {
                        let p = &meta.path;
                        quote!(#p).to_string().replace(' ', "")
                    }
                )))
            }
        }
        Ok(())
    });
    parser.parse2(attr)?;
    Ok((opts, flavor_span))
}

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

/// `#[ignore]`, and its reason if it has one (`#[ignore = "…"]`).
#[derive(Debug, PartialEq)]
pub enum Ignore {
    No,
    Yes,
    Because(String),
}

/// Takes `#[should_panic]`, `#[ignore]` (and refuses `#[test]`) off the function.
fn take_test_attrs(attrs: &mut Vec<Attribute>) -> syn::Result<(ShouldPanic, Ignore)> {
    let mut should_panic = None;
    let mut ignore = Ignore::No;
    let mut kept = Vec::new();
    for attr in attrs.drain(..) {
        let path = attr.path();
        if path.is_ident("test") {
            return Err(syn::Error::new(
                attr.span(),
                "remove `#[test]`: `#[nstest::test]` already makes this a test",
            ));
        } else if path.is_ident("ignore") {
            ignore = match &attr.meta {
                Meta::Path(_) => Ignore::Yes,
                Meta::NameValue(nv) => match &nv.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => Ignore::Because(s.value()),
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "expected `#[ignore]` or `#[ignore = \"reason\"]`",
                        ))
                    }
                },
                Meta::List(l) => {
                    return Err(syn::Error::new(
                        l.span(),
                        "expected `#[ignore]` or `#[ignore = \"reason\"]`",
                    ))
                }
            };
        } else if path.is_ident("should_panic") {
            if should_panic.is_some() {
                return Err(syn::Error::new(
                    attr.span(),
                    "`#[should_panic]` is given twice",
                ));
            }
            should_panic = Some(parse_should_panic(&attr)?);
        } else {
            kept.push(attr);
        }
    }
    *attrs = kept;
    Ok((should_panic.unwrap_or(ShouldPanic::No), ignore))
}

fn parse_should_panic(attr: &Attribute) -> syn::Result<ShouldPanic> {
    let bad = |span: Span| {
        syn::Error::new(span, "expected `#[should_panic]`, `#[should_panic = \"…\"]` or `#[should_panic(expected = \"…\")]`")
    };
    match &attr.meta {
        Meta::Path(_) => Ok(ShouldPanic::Yes),
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(ShouldPanic::WithMessage(s.value())),
            other => Err(bad(other.span())),
        },
        Meta::List(list) => {
            let mut expected = None;
            list.parse_nested_meta(|meta| {
                if meta.path.is_ident("expected") && expected.is_none() {
                    let s: LitStr = meta.value()?.parse()?;
                    expected = Some(s.value());
                    Ok(())
                } else {
                    Err(bad(meta.path.span()))
                }
            })?;
            expected
                .map(ShouldPanic::WithMessage)
                .ok_or_else(|| bad(list.span()))
        }
    }
}

/// The whole expansion: the function as written (less the test attributes) and its registration.
/// `tokio`: whether nstest's `tokio` feature is on (`async fn` tests need it).
pub fn expand(attr: TokenStream, item: TokenStream, tokio: bool) -> syn::Result<TokenStream> {
    let (opts, flavor_span) = parse_options_spanned(attr)?;
    let mut func: ItemFn = syn::parse2(item)?;
    if let Some(a) = func.sig.asyncness {
        if !tokio {
            return Err(syn::Error::new(
                a.span(),
                "`async fn` tests need nstest's `tokio` feature: `nstest = { version = \"0.1\", features = [\"tokio\"] }`",
            ));
        }
        // The runtime is built inside the container, by the body itself.
        let flavor = if opts.multi_thread == Some(true) {
            quote!(::nstest::__private::Flavor::MultiThread)
        } else {
            quote!(::nstest::__private::Flavor::CurrentThread)
        };
        let ret = match &func.sig.output {
            ReturnType::Type(_, ty) => quote!(#ty),
            ReturnType::Default => quote!(()),
        };
        let block = &func.block;
        let body: syn::Block = syn::parse_quote!({
            ::nstest::__private::block_on::<#ret, _>(#flavor, async move #block)
        });
        *func.block = body;
        func.sig.asyncness = None;
    } else if let Some(span) = flavor_span {
        return Err(syn::Error::new(
            span,
            "`flavor` applies to `async fn` tests only",
        ));
    }
    let sig = &func.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a test function cannot be generic",
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a test function takes no arguments",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "a test function takes no arguments",
        ));
    }
    let (should_panic, ignore) = take_test_attrs(&mut func.attrs)?;
    if should_panic != ShouldPanic::No {
        if let ReturnType::Type(_, ty) = &sig.output {
            return Err(syn::Error::new(
                ty.span(),
                "a `#[should_panic]` test must return `()`",
            ));
        }
    }

    let ident = func.sig.ident.clone();
    // A return type that is neither `()` nor `Result<(), E: Debug>` is reported at the type.
    let ret_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let name = ident.to_string();
    let opt_str = |o: &Option<String>| match o {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    };
    let hostname = opt_str(&opts.hostname);
    let rootfs = opt_str(&opts.rootfs);
    let timeout = match opts.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let opt_num = |o: Option<u64>| match o {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let memory = opt_num(opts.memory);
    let pids = opt_num(opts.pids);
    let cpus = match opts.cpus {
        Some(c) => quote!(::core::option::Option::Some(#c)),
        None => quote!(::core::option::Option::None),
    };
    let strs = |v: &Option<Vec<String>>| {
        let items = v.clone().unwrap_or_default();
        quote!(&[#(#items),*])
    };
    let bind = strs(&opts.bind);
    let env = strs(&opts.env);
    let workdir = opt_str(&opts.workdir);
    let net = if opts.host_net == Some(true) {
        quote!(::nstest::Net::Host)
    } else {
        quote!(::nstest::Net::Loopback)
    };
    let should_panic = match should_panic {
        ShouldPanic::No => quote!(::nstest::__private::ShouldPanic::No),
        ShouldPanic::Yes => quote!(::nstest::__private::ShouldPanic::Yes),
        ShouldPanic::WithMessage(m) => quote!(::nstest::__private::ShouldPanic::YesWithMessage(#m)),
    };
    // The body keeps the user's code under another name; the test's own name goes to the
    // `#[test]` wrapper that ordinary libtest targets run (under `harness = false`, rustc is not
    // given `--test`, `cfg(test)` is off and only the registration for `nstest::main!()` stays).
    let body_ident = syn::Ident::new(&format!("__nstest_body_{name}"), ident.span());
    let desc_ident = syn::Ident::new(&format!("__NSTEST_DESC_{name}"), ident.span());
    let call =
        quote_spanned!(ret_span=> ::nstest::__private::TestResult::into_result(#body_ident()));
    let (ignore_attr, ignore_reason) = match &ignore {
        Ignore::No => (quote!(), quote!(::core::option::Option::None)),
        Ignore::Yes => (quote!(#[ignore]), quote!(::core::option::Option::None)),
        Ignore::Because(r) => (
            quote!(#[ignore = #r]),
            quote!(::core::option::Option::Some(#r)),
        ),
    };
    let ignore = ignore != Ignore::No;
    let package = match opts.package {
        Some(p) => quote!(::core::option::Option::Some(#p)),
        None => quote!(::core::option::Option::None),
    };
    let vis = func.vis.clone();
    func.sig.ident = body_ident.clone();
    Ok(quote! {
        #[allow(non_snake_case)]
        #func

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[::nstest::__private::linkme::distributed_slice(::nstest::__private::TESTS)]
        #[linkme(crate = ::nstest::__private::linkme)]
        static #desc_ident: ::nstest::__private::TestDesc = ::nstest::__private::TestDesc {
            module_path: ::core::module_path!(),
            fn_name: #name,
            run: || #call,
            ignore: #ignore,
            ignore_reason: #ignore_reason,
            should_panic: #should_panic,
            hostname: #hostname,
            rootfs: #rootfs,
            timeout_ms: #timeout,
            net: #net,
            memory: #memory,
            pids: #pids,
            cpus: #cpus,
            bind: #bind,
            env: #env,
            workdir: #workdir,
            package: #package,
            manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
            target_tmpdir: ::core::option_env!("CARGO_TARGET_TMPDIR"),
        };

        #[cfg(test)]
        #[::core::prelude::v1::test]
        #ignore_attr
        #vis fn #ident() {
            ::nstest::__private::run_in_libtest(&#desc_ident)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_tests_need_the_feature_and_get_a_runtime() {
        let err = expand(
            quote!(),
            quote!(
                async fn t() {}
            ),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("features = [\"tokio\"]"), "{err}");
        let out = expand(
            quote!(flavor = "multi_thread"),
            quote!(
                async fn t() -> Result<(), ()> {
                    Ok(())
                }
            ),
            true,
        )
        .unwrap()
        .to_string();
        assert!(
            out.contains("block_on :: < Result < () , () > , _ >"),
            "{out}"
        );
        assert!(out.contains("Flavor :: MultiThread"), "{out}");
        assert!(!out.contains("async fn"), "{out}");
        let err = expand(
            quote!(flavor = "multi_thread"),
            quote!(
                fn t() {}
            ),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("async fn"), "{err}");
        assert!(parse_options(quote!(flavor = "green")).is_err());
    }

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

    #[test]
    fn should_panic_forms() {
        let f: ItemFn = syn::parse2(quote! {
            #[should_panic(expected = "boom")]
            #[ignore]
            #[inline]
            fn t() {}
        })
        .unwrap();
        let mut attrs = f.attrs;
        assert_eq!(
            take_test_attrs(&mut attrs).unwrap(),
            (ShouldPanic::WithMessage("boom".into()), Ignore::Yes)
        );
        assert_eq!(attrs.len(), 1, "other attributes stay");

        let f: ItemFn = syn::parse2(quote!(
            #[should_panic = "x"]
            fn t() {}
        ))
        .unwrap();
        assert_eq!(
            take_test_attrs(&mut f.attrs.clone()).unwrap().0,
            ShouldPanic::WithMessage("x".into())
        );
        let f: ItemFn = syn::parse2(quote!(
            #[should_panic(wrong = "x")]
            fn t() {}
        ))
        .unwrap();
        assert!(take_test_attrs(&mut f.attrs.clone()).is_err());
        let f: ItemFn = syn::parse2(quote!(
            #[ignore = "needs a disk"]
            fn t() {}
        ))
        .unwrap();
        assert_eq!(
            take_test_attrs(&mut f.attrs.clone()).unwrap().1,
            Ignore::Because("needs a disk".into())
        );
    }

    #[test]
    fn expansion_registers_the_test_by_absolute_paths() {
        let out = expand(
            quote!(hostname = "box"),
            quote!(
                fn my_test() {}
            ),
            false,
        )
        .unwrap()
        .to_string();
        assert!(out.contains("fn my_test"));
        assert!(out.contains(":: nstest :: __private :: TESTS"));
        assert!(out.contains("Some (\"box\")"));
        assert!(expand(
            quote!(),
            quote!(
                fn t(x: u8) {}
            ),
            true
        )
        .is_err());
        let should_panic_result = quote!(
            #[should_panic]
            fn t() -> Result<(), ()> {
                Ok(())
            }
        );
        assert!(expand(quote!(), should_panic_result, true).is_err());
    }
}
