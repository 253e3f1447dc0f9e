//! 500 isolated tests, for the load test in `tests/e2e.rs` (built as the example `e2e-load`).

macro_rules! ten {
    ($m:ident) => {
        mod $m {
            #[nstest::test]
            fn t0() {
                crate::body()
            }
            #[nstest::test]
            fn t1() {
                crate::body()
            }
            #[nstest::test]
            fn t2() {
                crate::body()
            }
            #[nstest::test]
            fn t3() {
                crate::body()
            }
            #[nstest::test]
            fn t4() {
                crate::body()
            }
            #[nstest::test]
            fn t5() {
                crate::body()
            }
            #[nstest::test]
            fn t6() {
                crate::body()
            }
            #[nstest::test]
            fn t7() {
                crate::body()
            }
            #[nstest::test]
            fn t8() {
                crate::body()
            }
            #[nstest::test]
            fn t9() {
                crate::body()
            }
        }
    };
}

macro_rules! hundred {
    ($m:ident) => {
        mod $m {
            ten!(a);
            ten!(b);
            ten!(c);
            ten!(d);
            ten!(e);
            ten!(f);
            ten!(g);
            ten!(h);
            ten!(i);
            ten!(j);
        }
    };
}

hundred!(h0);
hundred!(h1);
hundred!(h2);
hundred!(h3);
hundred!(h4);

/// Every test: PID 1, a rootfs no other test has written to, a write of its own.
fn body() {
    assert_eq!(std::process::id(), 1);
    assert!(!std::path::Path::new("/etc/load-marker").exists());
    std::fs::write("/etc/load-marker", "x").unwrap();
    assert!(std::path::Path::new("/bin/sh").exists());
}

nstest::main!();
