//! Image fixtures shared by the image and registry tests: two layers over the busybox root (a
//! whiteout, an opaque directory), as an OCI layout or a `docker save` archive, and the check
//! that a prepared base has both layers' effects.
#![allow(dead_code)] // each test crate uses some

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use nstest::rootfs::{self, Base};
use nstest::spec::RootfsSource;
use sha2::{Digest, Sha256};

pub fn tmp(name: &str) -> PathBuf {
    let d = super::process_dir("images").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("NSTEST_CACHE_DIR", tmp("cache")));
}

pub fn busybox_base() -> PathBuf {
    setup();
    match rootfs::prepare(&RootfsSource::Busybox).unwrap().base {
        Base::Dir(d) => d,
        other => panic!("{other:?}"),
    }
}

/// A tar of `files` (path, content; `None` content: a directory), after `base`'s tree if given.
pub fn layer(base: Option<&Path>, files: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if let Some(base) = base {
        b.append_dir_all(".", base).unwrap();
    }
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match content {
            Some(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, path, c.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The two layers: the busybox root plus files; then whiteouts and an opaque directory. `salt`
/// makes the image's content (and so its cache entry) its own.
pub fn layers(salt: &str) -> (Vec<u8>, Vec<u8>) {
    let base = busybox_base();
    let l1 = layer(
        Some(&base),
        &[
            ("etc/layer1-only", Some("one")),
            ("opt/data", None),
            ("opt/data/a", Some("a")),
            ("opt/data/b", Some("b")),
        ],
    );
    let l2 = layer(
        None,
        &[
            ("etc/.wh.layer1-only", Some("")),
            ("opt/data", None),
            ("opt/data/.wh..wh..opq", Some("")),
            ("opt/data/c", Some("c")),
            ("etc/layer2-file", Some("two")),
            ("etc/salt", Some(salt)),
        ],
    );
    (l1, l2)
}

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `data` as a blob of the OCI layout at `dir`: its digest and size.
pub fn put_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let hex = sha256(data);
    std::fs::write(blobs.join(&hex), data).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// The layout's `index.json`, whose one entry (`digest`, of `media_type` and `size` bytes) is
/// tagged `tag`, and its `oci-layout` file.
pub fn write_index(dir: &Path, media_type: &str, digest: &str, size: usize, tag: &str) {
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// An OCI image layout (what `skopeo copy … oci:dir:tag` writes), layer blobs gzip-compressed.
pub fn oci_layout(dir: &Path, tag: &str) -> Vec<String> {
    let (l1, l2) = layers(&dir.display().to_string());
    let put = |data: &[u8]| put_blob(dir, data);
    let layer_digests: Vec<(String, usize)> =
        [gzip(&l1), gzip(&l2)].iter().map(|l| put(l)).collect();
    let (config, config_size) =
        put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let layers_json: Vec<String> = layer_digests
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]}}"#,
        layers_json.join(",")
    );
    let (m, m_size) = put(manifest.as_bytes());
    write_index(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &m,
        m_size,
        tag,
    );
    layer_digests.into_iter().map(|(d, _)| d).collect()
}

/// A `docker save` archive of the same two layers (uncompressed, as docker writes them).
pub fn docker_archive(path: &Path) {
    let (l1, l2) = layers(&path.display().to_string());
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("l1/layer.tar", &l1);
    add("l2/layer.tar", &l2);
    add("config.json", b"{}");
    add("manifest.json", br#"[{"Config":"config.json","RepoTags":["nstest/layers:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#);
    b.finish().unwrap();
}

/// The base a source prepares to, with the layers' effects checked.
pub fn assert_layered(source: RootfsSource) -> PathBuf {
    let prepared = rootfs::prepare(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let Base::Dir(base) = prepared.base else {
        panic!()
    };
    assert!(base.join("bin/busybox").is_file(), "layer 1's busybox");
    assert!(
        !base.join("etc/layer1-only").exists(),
        "whited out by layer 2"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("etc/layer2-file")).unwrap(),
        "two"
    );
    let data: Vec<String> = std::fs::read_dir(base.join("opt/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        data,
        ["c"],
        "an opaque directory hides what the layers below put there"
    );
    assert!(
        !base.join("etc/.wh.layer1-only").exists() && !base.join("opt/data/.wh..wh..opq").exists()
    );
    base
}

/// A directory packed as a tar, its entries named from the top (as skopeo and docker pack them).
pub fn tar_of(dir: &Path, to: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(to)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}
