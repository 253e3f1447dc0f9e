//! The code `#[nstest::test(...)]` generates: the function as written (less the test
//! attributes) and its registration. The options are read in `options`, the test attributes
//! in `attrs`.
//!
//! Generated code names everything by absolute path (`::nstest::…`, `::core::…`) so that it
//! compiles whatever the user has in scope.

use crate::attrs::{take_test_attrs, Ignore, ShouldPanic};
use crate::options::parse_options_spanned;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

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
    use crate::options::parse_options;

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
