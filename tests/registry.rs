//! Images by name (`docker://…`) against a real registry started here on loopback (Debian's
//! `docker-registry`, the reference distribution server; `skopeo` pushes to it): a tag, a
//! digest, an index of two platforms, a missing tag, a blob that is not what its digest says, a
//! second run with the server stopped, concurrent pulls, and token auth in front of it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::images::*;
use nstest::rootfs::{self, Base};
use nstest::spec::RootfsSource;

/// A registry on a free loopback port, with a filesystem store; killed when dropped.
struct Registry {
    addr: String,
    store: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Registry {
    fn start(name: &str) -> Registry {
        let dir = tmp(&format!("registry-{name}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let store = dir.join("store");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                store.display()
            ),
        )
        .unwrap();
        let log = dir.join("log.txt");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(dir.join("out.txt")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("docker-registry: apt-get install -y docker-registry");
        let r = Registry {
            addr,
            store,
            log,
            child,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&r.addr).is_err() {
            assert!(Instant::now() < until, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `skopeo copy` of the OCI layout `layout`'s image `tag` to `repo:tag` here (`all`: every
    /// image of an index).
    fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .expect("skopeo: apt-get install -y skopeo");
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prepares `reference` in a fresh process (its own in-process caches: a second "run") with the
/// cache `cache` and `env`; its result line, `OK <base>` or `ERR <message>`.
fn pull_in_a_process(reference: &str, cache: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pull_helper", "--ignored", "--nocapture"])
        .env("NSTEST_CACHE_DIR", cache)
        .env("PULL_HELPER_REF", reference)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("OK ") || l.starts_with("ERR "))
        .unwrap_or_else(|| panic!("no result: {text}{}", String::from_utf8_lossy(&out.stderr)))
        .to_string()
}

/// Run by [`pull_in_a_process`].
#[test]
#[ignore = "run by the other tests, in processes of their own"]
fn pull_helper() {
    let reference = std::env::var("PULL_HELPER_REF").unwrap();
    let source = RootfsSource::parse(&reference, Path::new("/")).unwrap();
    match rootfs::prepare(&source) {
        Ok(p) => match p.base {
            Base::Dir(d) => println!("OK {}", d.display()),
            Base::Host => println!("ERR host"),
        },
        Err(e) => println!("ERR {e}"),
    }
}

/// The OCI layout `dir`'s one image's manifest digest.
fn manifest_digest(dir: &Path) -> String {
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    let at = index.find("sha256:").unwrap();
    index[at..at + 71].to_string()
}

#[test]
fn a_tag_is_pulled_once_kept_and_used_offline_and_a_digest_pins_it() {
    setup();
    let registry = Registry::start("tag");
    let layout = tmp("tag-layout");
    oci_layout(&layout, "1");
    registry.push(&layout, "1", "test/layers", false);
    let cache = tmp("tag-cache");
    let tag = format!("docker://{}/test/layers:1", registry.addr);
    let first = pull_in_a_process(&tag, &cache, &[]);
    assert!(first.starts_with("OK "), "{first}");
    // The base has both layers' effects (checked in this process, pulled into its own cache).
    assert_layered(RootfsSource::parse(&tag, Path::new("/")).unwrap());
    // By digest: the same image, the same base.
    let pinned = format!(
        "docker://{}/test/layers@{}",
        registry.addr,
        manifest_digest(&layout)
    );
    assert_eq!(pull_in_a_process(&pinned, &cache, &[]), first);
    // The server stopped: the tag's kept digest serves, offline; asked to pull again, it names
    // the cause.
    drop(registry);
    assert_eq!(pull_in_a_process(&tag, &cache, &[]), first);
    assert_eq!(pull_in_a_process(&pinned, &cache, &[]), first);
    let again = pull_in_a_process(&tag, &cache, &[("NSTEST_PULL", "always")]);
    assert!(
        again.contains(&format!("cannot pull {tag}: cannot reach the registry")),
        "{again}"
    );
}

#[test]
fn a_missing_tag_or_repository_is_named_and_nothing_is_kept() {
    setup();
    let registry = Registry::start("missing");
    let layout = tmp("missing-layout");
    oci_layout(&layout, "1");
    registry.push(&layout, "1", "test/here", false);
    let cache = tmp("missing-cache");
    for (reference, what) in [
        (
            format!("docker://{}/test/here:nope", registry.addr),
            "manifest nope",
        ),
        (
            format!("docker://{}/test/gone:1", registry.addr),
            "manifest 1",
        ),
    ] {
        let err = pull_in_a_process(&reference, &cache, &[]);
        assert!(
            err.contains(&format!(
                "cannot pull {reference}: the registry has no {what}"
            )),
            "{err}"
        );
    }
    assert!(!cache.join("images/refs").read_dir().unwrap().any(|_| true));
}

/// The registry's stored copy of the blob `digest`.
fn stored_blob(store: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    store.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

#[test]
fn a_blob_that_is_not_what_its_digest_says_is_refused_and_nothing_is_kept() {
    setup();
    let registry = Registry::start("corrupt");
    let layout = tmp("corrupt-layout");
    let layers = oci_layout(&layout, "1");
    registry.push(&layout, "1", "test/corrupt", false);
    // Another content under the second layer's digest, in the registry's own store.
    let data = stored_blob(&registry.store, &layers[1]);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let cache = tmp("corrupt-cache");
    let reference = format!("docker://{}/test/corrupt:1", registry.addr);
    let err = pull_in_a_process(&reference, &cache, &[]);
    assert!(
        err.contains(&format!("blob {} came with another digest", layers[1]))
            && err.contains("nothing was kept"),
        "{err}"
    );
    let kept = cache
        .join("images/blobs/sha256")
        .join(layers[1].trim_start_matches("sha256:"));
    assert!(!kept.exists(), "the corrupt blob was kept");
    assert!(!cache.join("bases").read_dir().unwrap().any(|_| true));
}

#[test]
fn an_index_of_two_platforms_gives_this_machines() {
    setup();
    let registry = Registry::start("index");
    let dir = tmp("index-layout");
    two_platform_layout(&dir, "multi");
    registry.push(&dir, "multi", "test/multi", true);
    let cache = tmp("index-cache");
    let reference = format!("docker://{}/test/multi:multi", registry.addr);
    let ok = pull_in_a_process(&reference, &cache, &[]);
    let base = ok.strip_prefix("OK ").unwrap_or_else(|| panic!("{ok}"));
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    assert_eq!(
        std::fs::read_to_string(Path::new(base).join("etc/arch")).unwrap(),
        arch
    );
}

/// An OCI layout whose one tag is an image index of two images, linux/amd64 and linux/arm64,
/// each a busybox root with its platform in `/etc/arch`.
fn two_platform_layout(dir: &Path, tag: &str) {
    let put = |data: &[u8]| put_blob(dir, data);
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tar = layer(Some(&busybox_base()), &[("etc/arch", Some(arch))]);
        let (l, l_size) = put(&gzip(&tar));
        let (c, c_size) = put(
            format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#, sha256(&tar))
                .as_bytes(),
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{c_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l}","size":{l_size}}}]}}"#
        );
        let (m, m_size) = put(manifest.as_bytes());
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{m_size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let (i, i_size) = put(index.as_bytes());
    write_index(
        dir,
        "application/vnd.oci.image.index.v1+json",
        &i,
        i_size,
        tag,
    );
}

#[test]
fn processes_pulling_one_image_at_once_download_it_once() {
    setup();
    let registry = Registry::start("race");
    let layout = tmp("race-layout");
    let layers = oci_layout(&layout, "1");
    registry.push(&layout, "1", "test/race", false);
    let cache = tmp("race-cache");
    let reference = format!("docker://{}/test/race:1", registry.addr);
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let (r, c) = (reference.clone(), cache.clone());
            std::thread::spawn(move || pull_in_a_process(&r, &c, &[]))
        })
        .collect();
    let results: Vec<String> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        results
            .iter()
            .all(|r| r == &results[0] && r.starts_with("OK ")),
        "{results:?}"
    );
    // Each layer was fetched once (the registry logs every request it serves).
    let log = std::fs::read_to_string(&registry.log).unwrap();
    for l in &layers {
        let gets = log
            .lines()
            .filter(|line| {
                line.contains(&format!("/v2/test/race/blobs/{l}")) && line.contains("GET")
            })
            .filter(|line| line.contains("response completed"))
            .count();
        assert_eq!(gets, 1, "layer {l} fetched {gets} times:\n{log}");
    }
}

/// A registry in front of `upstream` that asks for a bearer token, which its `/token` endpoint
/// gives for the basic credentials `user:pass` only (or to anyone, with `anonymous`: Docker
/// Hub's public images); what it serves with the token, it proxies.
fn token_front(upstream: String, anonymous: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let me = addr.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (upstream, me) = (upstream.clone(), me.clone());
            std::thread::spawn(move || serve_front(conn, &upstream, &me, anonymous));
        }
    });
    addr
}

fn serve_front(mut conn: TcpStream, upstream: &str, me: &str, anonymous: bool) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let path = head
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let header = |name: &str| {
        head.iter()
            .find_map(|h| {
                h.split_once(": ")
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.to_string())
    };
    let reply = |conn: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    // base64("user:pass")
    if path.starts_with("/token") {
        if anonymous || header("Authorization").as_deref() == Some("Basic dXNlcjpwYXNz") {
            reply(
                &mut conn,
                "200 OK",
                "Content-Type: application/json\r\n",
                r#"{"token":"t0k"}"#,
            );
        } else {
            reply(&mut conn, "401 Unauthorized", "", "");
        }
        return;
    }
    if header("Authorization").as_deref() != Some("Bearer t0k") {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"front\",scope=\"repository:test/auth:pull\"\r\n"
        );
        reply(&mut conn, "401 Unauthorized", &challenge, "");
        return;
    }
    let mut up = TcpStream::connect(upstream).unwrap();
    let accept = header("Accept").unwrap_or_else(|| "*/*".into());
    let _ = write!(
        up,
        "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let mut response = Vec::new();
    let _ = up.read_to_end(&mut response);
    let _ = conn.write_all(&response);
}

#[test]
fn token_auth_takes_the_credentials_of_the_auth_file_and_names_a_refusal() {
    setup();
    let registry = Registry::start("auth");
    let layout = tmp("auth-layout");
    oci_layout(&layout, "1");
    registry.push(&layout, "1", "test/auth", false);
    let front = token_front(registry.addr.clone(), false);
    let reference = format!("docker://{front}/test/auth:1");
    let files = tmp("auth-files");
    let auth_file = |name: &str, userpass: &str| {
        let f = files.join(name);
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(userpass)
        };
        std::fs::write(
            &f,
            format!(r#"{{"auths":{{"{front}":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        f
    };
    let good = auth_file("good.json", "user:pass");
    let bad = auth_file("bad.json", "user:wrong");
    let none = files.join("none.json");
    let ok = pull_in_a_process(
        &reference,
        &tmp("auth-cache-good"),
        &[
            ("REGISTRY_AUTH_FILE", good.to_str().unwrap()),
            ("HOME", "/nonexistent"),
        ],
    );
    assert!(ok.starts_with("OK "), "{ok}");
    // The same credentials where docker keeps them.
    let home = tmp("auth-home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::copy(&good, home.join(".docker/config.json")).unwrap();
    let ok = pull_in_a_process(
        &reference,
        &tmp("auth-cache-docker"),
        &[
            ("REGISTRY_AUTH_FILE", ""),
            ("XDG_RUNTIME_DIR", ""),
            ("HOME", home.to_str().unwrap()),
        ],
    );
    assert!(ok.starts_with("OK "), "{ok}");
    // An anonymous token, where the registry gives one to anyone.
    let open = format!(
        "docker://{}/test/auth:1",
        token_front(registry.addr.clone(), true)
    );
    let ok = pull_in_a_process(
        &open,
        &tmp("auth-cache-anonymous"),
        &[("REGISTRY_AUTH_FILE", ""), ("HOME", "/nonexistent")],
    );
    assert!(ok.starts_with("OK "), "{ok}");
    for file in [&bad, &none] {
        let err = pull_in_a_process(
            &reference,
            &tmp("auth-cache-refused"),
            &[
                ("REGISTRY_AUTH_FILE", file.to_str().unwrap()),
                ("HOME", "/nonexistent"),
            ],
        );
        assert!(
            err.contains(&format!(
                "cannot pull {reference}: the registry refused access (HTTP 401)"
            )),
            "{err}"
        );
    }
}
