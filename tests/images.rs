//! Images as rootfs: an OCI image layout and a `docker save` archive, built here from the
//! busybox fixture with two layers and whiteouts; zstd and xz tarballs; a missing or corrupt
//! layer; a second run that unpacks nothing; two binaries racing on an empty cache.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::images::*;
use nstest::rootfs::image::ImageError;
use nstest::rootfs::{self, Base, RootfsError};
use nstest::spec::RootfsSource;

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
