//! `async fn` tests under `harness = false` (the `tokio` feature): the runtime is built inside
//! the container.

#[nstest::test(hostname = "async-box")]
async fn an_async_test_runs_as_pid_one() {
    assert_eq!(std::process::id(), 1);
    // Without `flavor`, the runtime is a current-thread one.
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        std::fs::read_to_string("/etc/hostname").unwrap(),
        "async-box\n"
    );
    std::fs::write("/etc/async-marker", "x").unwrap();
}

#[nstest::test]
async fn its_writes_stay_in_its_container() {
    assert!(!std::path::Path::new("/etc/async-marker").exists());
}

#[nstest::test(flavor = "multi_thread")]
async fn multi_thread_flavor_and_loopback_network() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
    tokio::net::TcpStream::connect(addr).await?;
    accept.await??;
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    Ok(())
}

#[nstest::test]
#[should_panic(expected = "async boom")]
async fn an_async_panic_is_reported() {
    tokio::task::yield_now().await;
    panic!("async boom");
}

nstest::main!();
