//! `async fn` tests in an ordinary libtest target (the `tokio` feature), beside a plain one.

#[test]
fn plain_test_in_process() {
    assert_ne!(std::process::id(), 1);
}

#[nstest::test(hostname = "async-lib")]
async fn async_test_in_its_container() {
    assert_eq!(std::process::id(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "async-lib"
    );
    std::fs::write("/etc/async-lib-marker", "x").unwrap();
}

#[nstest::test(flavor = "multi_thread")]
async fn multi_thread_async_test_never_sees_other_writes() {
    assert!(!std::path::Path::new("/etc/async-lib-marker").exists());
    let h = tokio::spawn(async { std::process::id() });
    assert_eq!(h.await.unwrap(), 1);
}

#[nstest::test]
#[ignore]
async fn deliberately_fails_async() {
    tokio::task::yield_now().await;
    panic!("async failure inside the container");
}

#[test]
fn a_failing_async_test_is_reported_by_libtest() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "deliberately_fails_async", "--include-ignored"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("test deliberately_fails_async ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains("async failure inside the container"),
        "{text}"
    );
}
