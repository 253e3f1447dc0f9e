//! Container images as rootfs sources: an OCI image layout directory (`oci:dir[:tag]`, as
//! `skopeo copy docker://alpine:3.20 oci:dir:tag` writes it) and a `docker save` archive
//! (`docker-archive:path`). Their layers are applied in order, whiteouts honoured, into the
//! cache entry being built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::owners::Owners;
use super::{unpack, RootfsError};

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Descriptor>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn bad(path: &Path, what: impl Into<String>) -> RootfsError {
    RootfsError::Image {
        path: path.to_path_buf(),
        reason: what.into(),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RootfsError> {
    let text = std::fs::read(path).map_err(|e| RootfsError::Read {
        path: path.into(),
        source: Arc::new(e),
    })?;
    serde_json::from_slice(&text).map_err(|e| bad(path, format!("not the JSON expected: {e}")))
}

/// The blob of `digest` (`sha256:<hex>`) in the layout at `dir`, checked against its digest.
fn blob(dir: &Path, digest: &str) -> Result<PathBuf, RootfsError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(dir, format!("malformed digest {digest:?}")))?;
    if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            dir,
            format!("unsupported digest {digest:?} (sha256 only)"),
        ));
    }
    let path = dir.join("blobs").join(alg).join(hex);
    if !path.is_file() {
        return Err(bad(
            dir,
            format!("missing blob {digest} (a layer or manifest was not copied?)"),
        ));
    }
    let actual = sha256_file(&path)?;
    if actual != hex {
        return Err(bad(
            &path,
            format!("corrupt blob: its sha256 is {actual}, not {hex}"),
        ));
    }
    Ok(path)
}

/// The lowercase hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String, RootfsError> {
    let mut f = std::fs::File::open(path).map_err(|e| RootfsError::Read {
        path: path.into(),
        source: Arc::new(e),
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| RootfsError::Read {
        path: path.into(),
        source: Arc::new(e),
    })?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The digest of the image manifest that `oci:dir[:tag]` names: the cache key of the image.
///
/// ```no_run
/// let digest = nstest::rootfs::image::oci_manifest("alpine-oci".as_ref(), Some("3.20"))?;
/// assert!(digest.starts_with("sha256:"));
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn oci_manifest(dir: &Path, tag: Option<&str>) -> Result<String, RootfsError> {
    if !dir.join("oci-layout").is_file() {
        return Err(bad(dir, "not an OCI image layout (no oci-layout file)"));
    }
    let index: Index = read_json(&dir.join("index.json"))?;
    let pick = |ms: &[Descriptor]| -> Result<Descriptor, RootfsError> {
        let named: Vec<&Descriptor> = match tag {
            Some(t) => ms
                .iter()
                .filter(|m| {
                    m.annotations
                        .get(REF_NAME)
                        .is_some_and(|r| r == t || r.ends_with(&format!(":{t}")))
                })
                .collect(),
            None => ms.iter().collect(),
        };
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(bad(
                dir,
                format!(
                    "no image tagged {:?} (tags: {})",
                    tag.unwrap_or(""),
                    tags(ms)
                ),
            )),
            _ => Err(bad(
                dir,
                format!(
                    "several images: name one as oci:{}:<tag> (tags: {})",
                    dir.display(),
                    tags(ms)
                ),
            )),
        }
    };
    let mut desc = pick(&index.manifests)?;
    // An image index: take the manifest for this machine.
    while desc.media_type.contains("index") {
        let inner: Index = read_json(&blob(dir, &desc.digest)?)?;
        desc = inner
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == this_arch())
            })
            .cloned()
            .ok_or_else(|| bad(dir, format!("no linux/{} image in the index", this_arch())))?;
    }
    Ok(desc.digest)
}

fn tags(ms: &[Descriptor]) -> String {
    let t: Vec<&str> = ms
        .iter()
        .filter_map(|m| m.annotations.get(REF_NAME).map(String::as_str))
        .collect();
    if t.is_empty() {
        "none".into()
    } else {
        t.join(", ")
    }
}

/// Applies the layers of the manifest `digest` of the layout at `dir` into `dest`, in order.
///
/// ```no_run
/// let digest = nstest::rootfs::image::oci_manifest("img".as_ref(), None)?;
/// nstest::rootfs::image::build_oci("img".as_ref(), &digest, "/tmp/root".as_ref(), &mut Default::default())?;
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn build_oci(
    dir: &Path,
    digest: &str,
    dest: &Path,
    owners: &mut Owners,
) -> Result<(), RootfsError> {
    let manifest: Manifest = read_json(&blob(dir, digest)?)?;
    if manifest.layers.is_empty() {
        return Err(bad(dir, "the image has no layers"));
    }
    for layer in &manifest.layers {
        unpack::apply_layer(&blob(dir, &layer.digest)?, dest, owners)?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct SaveEntry {
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Builds `dest` from a `docker save` archive: the archive is unpacked (safely) into `scratch`,
/// then the first image's layers are applied in order.
///
/// ```no_run
/// nstest::rootfs::image::build_docker_archive("save.tar".as_ref(), "/tmp/scratch".as_ref(), "/tmp/root".as_ref(), &mut Default::default())?;
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn build_docker_archive(
    archive: &Path,
    scratch: &Path,
    dest: &Path,
    owners: &mut Owners,
) -> Result<(), RootfsError> {
    // The archive's own entries (manifest, layer tarballs) need no owners.
    unpack::unpack(archive, scratch, &mut Owners::default())?;
    let manifest = scratch.join("manifest.json");
    if !manifest.is_file() {
        return Err(bad(
            archive,
            "not a `docker save` archive (no manifest.json)",
        ));
    }
    let images: Vec<SaveEntry> = read_json(&manifest)?;
    let image = images
        .first()
        .ok_or_else(|| bad(archive, "manifest.json lists no image"))?;
    for layer in &image.layers {
        unpack::check_inside(Path::new(layer))
            .map_err(|r| bad(archive, format!("layer {layer:?}: {r}")))?;
        let path = scratch.join(layer);
        if !path.is_file() {
            return Err(bad(archive, format!("missing layer {layer}")));
        }
        unpack::apply_layer(&path, dest, owners)?;
    }
    Ok(())
}
