//! The test attributes `#[nstest::test]` reads off the function as `#[test]` would:
//! `#[should_panic]` and `#[ignore]` in their forms; `#[test]` itself is refused.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta};

/// What `#[should_panic]` says.
#[derive(Debug, PartialEq)]
pub enum ShouldPanic {
    No,
    Yes,
    WithMessage(String),
}

/// `#[ignore]`, and its reason if it has one (`#[ignore = "…"]`).
#[derive(Debug, PartialEq)]
pub enum Ignore {
    No,
    Yes,
    Because(String),
}

/// Takes `#[should_panic]`, `#[ignore]` (and refuses `#[test]`) off the function.
pub fn take_test_attrs(attrs: &mut Vec<Attribute>) -> syn::Result<(ShouldPanic, Ignore)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::ItemFn;

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
}
