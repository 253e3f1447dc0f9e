//! Images as rootfs: an OCI image layout and a `docker save` archive, built here from the
//! busybox fixture with two layers and whiteouts; zstd and xz tarballs; a missing or corrupt
//! layer; a second run that unpacks nothing; two binaries racing on an empty cache.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use nstest::rootfs::image::ImageError;
use nstest::rootfs::{self, Base, RootfsError};
use nstest::spec::RootfsSource;
use sha2::{Digest, Sha256};

fn tmp(name: &str) -> PathBuf {
    let d = common::process_dir("images").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("NSTEST_CACHE_DIR", tmp("cache")));
}

fn busybox_base() -> PathBuf {
    setup();
    match rootfs::prepare(&RootfsSource::Busybox).unwrap().base {
        Base::Dir(d) => d,
        other => panic!("{other:?}"),
    }
}

/// A tar of `files` (path, content; `None` content: a directory), after `base`'s tree if given.
fn layer(base: Option<&Path>, files: &[(&str, Option<&str>)]) -> Vec<u8> {
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

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The two layers: the busybox root plus files; then whiteouts and an opaque directory. `salt`
/// makes the image's content (and so its cache entry) its own.
fn layers(salt: &str) -> (Vec<u8>, Vec<u8>) {
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

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OCI image layout (what `skopeo copy … oci:dir:tag` writes), layer blobs gzip-compressed.
fn oci_layout(dir: &Path, tag: &str) -> Vec<String> {
    let (l1, l2) = layers(&dir.display().to_string());
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let hex = sha256(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
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
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{m_size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layer_digests.into_iter().map(|(d, _)| d).collect()
}

/// A `docker save` archive of the same two layers (uncompressed, as docker writes them).
fn docker_archive(path: &Path) {
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
fn assert_layered(source: RootfsSource) -> PathBuf {
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

#[test]
fn an_oci_layout_with_two_layers_and_whiteouts() {
    let dir = tmp("oci");
    oci_layout(&dir, "test");
    let spec = format!("oci:{}:test", dir.display());
    let source = RootfsSource::parse(&spec, Path::new("/")).unwrap();
    assert_layered(source);
    // The only image needs no tag; a wrong one is named.
    assert_layered(RootfsSource::Oci {
        dir: dir.clone(),
        tag: None,
    });
    let err = rootfs::prepare(&RootfsSource::Oci {
        dir,
        tag: Some("nope".into()),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no image tagged \"nope\" (tags: test)"),
        "{err}"
    );
    assert!(
        matches!(&err, RootfsError::Image { reason: ImageError::NoSuchTag { tag, .. }, .. } if tag == "nope"),
        "{err:?}"
    );
}

#[test]
fn a_docker_save_archive_with_two_layers_and_whiteouts() {
    setup();
    let path = tmp("docker").join("save.tar");
    docker_archive(&path);
    assert_layered(RootfsSource::DockerArchive(path));
}

/// A directory packed as a tar, its entries named from the top (as skopeo and docker pack them).
fn tar_of(dir: &Path, to: &Path) {
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

/// A `docker save` archive given as a plain path (`rootfs = "save.tar"`, the way users write
/// it), compressed or not, and an OCI layout packed as a tar (skopeo's `oci-archive:`, and
/// Docker 25+'s `docker save`, which writes both), are recognised by what they hold.
#[test]
fn an_image_archive_given_as_a_plain_path_is_used_as_the_image() {
    setup();
    let dir = tmp("plain");
    let save = dir.join("save.tar");
    docker_archive(&save);
    assert_layered(RootfsSource::Tar(save.clone()));
    let gz = dir.join("save.tar.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&save).unwrap())).unwrap();
    assert_layered(RootfsSource::Tar(gz));

    let layout = dir.join("layout");
    oci_layout(&layout, "only");
    let oci_tar = dir.join("oci.tar");
    tar_of(&layout, &oci_tar);
    assert_layered(RootfsSource::Tar(oci_tar));

    // Docker 25+: the OCI layout, and a manifest.json whose layers are its blobs.
    let digests = oci_layout(&dir.join("docker25"), "docker25:1");
    let layers: Vec<String> = digests
        .iter()
        .map(|d| format!("\"blobs/sha256/{}\"", d.trim_start_matches("sha256:")))
        .collect();
    std::fs::write(
        dir.join("docker25/manifest.json"),
        format!(
            r#"[{{"Config":"blobs/sha256/none","RepoTags":["docker25:1"],"Layers":[{}]}}]"#,
            layers.join(",")
        ),
    )
    .unwrap();
    let docker25 = dir.join("docker25.tar");
    tar_of(&dir.join("docker25"), &docker25);
    assert_layered(RootfsSource::Tar(docker25));
}

#[test]
fn a_missing_or_corrupt_layer_is_refused_and_nothing_is_left() {
    setup();
    let dir = tmp("oci-missing");
    let layers = oci_layout(&dir, "m");
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    std::fs::remove_file(blob(&layers[1])).unwrap();
    let err = rootfs::prepare(&RootfsSource::Oci {
        dir: dir.clone(),
        tag: None,
    })
    .unwrap_err();
    assert!(
        matches!(&err, RootfsError::Image { reason: ImageError::MissingBlob(d), .. } if d == &layers[1])
            && err.to_string().contains("missing blob"),
        "{err}"
    );

    let dir = tmp("oci-corrupt");
    let layers = oci_layout(&dir, "c");
    let path = dir
        .join("blobs/sha256")
        .join(layers[0].trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = rootfs::prepare(&RootfsSource::Oci { dir, tag: None }).unwrap_err();
    assert!(err.to_string().contains("corrupt blob"), "{err}");
    assert!(
        matches!(&err, RootfsError::Image { reason: ImageError::CorruptBlob { expected, .. }, .. }
            if layers[0].ends_with(expected.as_str())),
        "{err:?}"
    );

    let save = tmp("docker-missing").join("save.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&save).unwrap());
    let mut h = tar::Header::new_gnu();
    let manifest = br#"[{"Config":"c.json","RepoTags":[],"Layers":["gone/layer.tar"]}]"#;
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "manifest.json", &manifest[..])
        .unwrap();
    b.finish().unwrap();
    drop(b);
    let err = rootfs::prepare(&RootfsSource::DockerArchive(save)).unwrap_err();
    assert!(
        err.to_string().contains("missing layer gone/layer.tar"),
        "{err}"
    );
    assert!(
        matches!(&err, RootfsError::Image { reason: ImageError::MissingLayer(l), .. } if l == "gone/layer.tar"),
        "{err:?}"
    );

    let cache = Path::new(&std::env::var_os("NSTEST_CACHE_DIR").unwrap()).join("tmp");
    let left: Vec<_> = std::fs::read_dir(cache).unwrap().collect();
    assert!(left.is_empty(), "failed builds leave nothing: {left:?}");
}

#[test]
fn zstd_and_xz_tarballs() {
    let base = busybox_base();
    let tar = layer(Some(&base), &[("etc/compressed", Some("yes"))]);
    let d = tmp("compressed");
    let zst = d.join("root.tar.zst");
    std::fs::write(&zst, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let xz = d.join("root.tar.xz");
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(&tar).unwrap();
    std::fs::write(&xz, e.finish().unwrap()).unwrap();
    for path in [zst, xz] {
        let source = RootfsSource::parse(path.to_str().unwrap(), Path::new("/")).unwrap();
        let Base::Dir(b) = rootfs::prepare(&source).unwrap().base else {
            panic!()
        };
        assert_eq!(
            std::fs::read_to_string(b.join("etc/compressed")).unwrap(),
            "yes",
            "{}",
            path.display()
        );
        assert!(b.join("bin/busybox").is_file());
    }
}

fn fixture() -> PathBuf {
    common::example("e2e-fixture")
}

#[test]
fn containers_run_over_images_a_second_run_unpacks_nothing_and_racers_unpack_once() {
    let dir = tmp("oci-e2e");
    oci_layout(&dir, "e2e");
    let save = dir.parent().unwrap().join("e2e-save.tar");
    docker_archive(&save);
    for rootfs in [
        format!("oci:{}:e2e", dir.display()),
        format!("docker-archive:{}", save.display()),
    ] {
        let cache = tmp("race-cache");
        let run = || {
            let (cache, rootfs) = (cache.clone(), rootfs.clone());
            std::thread::spawn(move || {
                Command::new(fixture())
                    .args(["demo_pid_one", "--exact"])
                    .env("NSTEST_CACHE_DIR", &cache)
                    .env("NSTEST_ROOTFS", &rootfs)
                    .output()
                    .unwrap()
            })
        };
        let unpacks = |outs: &[std::process::Output]| -> usize {
            outs.iter()
                .map(|o| {
                    let err = String::from_utf8_lossy(&o.stderr);
                    assert!(
                        o.status.success(),
                        "{rootfs}:\n{}{err}",
                        String::from_utf8_lossy(&o.stdout)
                    );
                    err.matches("nstest: unpacked").count()
                })
                .sum()
        };
        // Two binaries at once on an empty cache: both pass over the image, unpacked once.
        let racers = [run(), run()].map(|t| t.join().unwrap());
        assert_eq!(
            unpacks(&racers),
            1,
            "{rootfs}: the racers unpack the image once"
        );
        // A later run finds it in the cache.
        let later = [run().join().unwrap()];
        assert_eq!(unpacks(&later), 0, "{rootfs}: a second run unpacks nothing");
        let bases: Vec<_> = std::fs::read_dir(cache.join("bases")).unwrap().collect();
        assert_eq!(bases.len(), 1, "{rootfs}: {bases:?}");
        let left: Vec<_> = std::fs::read_dir(cache.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
