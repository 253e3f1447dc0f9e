//! Container images as rootfs sources: an OCI image layout directory (`oci:dir[:tag]`, as
//! `skopeo copy docker://alpine:3.20 oci:dir:tag` writes it) and a `docker save` archive
//! (`docker-archive:path`). Their layers are applied in order, whiteouts honoured, into the
//! cache entry being built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miniserde::Deserialize;
use sha2::{Digest, Sha256};

use super::owners::Owners;
use super::{unpack, RootfsError};

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    annotations: Option<std::collections::BTreeMap<String, String>>,
    platform: Option<Platform>,
}

impl Descriptor {
    /// Its `org.opencontainers.image.ref.name` annotation (its tag), if any.
    fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }
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

/// Why an image was refused, by the step that found it out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageError {
    /// A JSON file (`index.json`, a manifest, `manifest.json`) is not what the format says.
    NotJson(String),
    /// A digest is not `<algorithm>:<hex>`.
    MalformedDigest(String),
    /// A digest of another algorithm than sha256.
    UnsupportedDigest(String),
    /// A blob the image names is not in the layout.
    MissingBlob(String),
    /// A blob's content does not have the digest it is stored under.
    CorruptBlob {
        /// The sha256 its name says.
        expected: String,
        /// The sha256 of its content.
        actual: String,
    },
    /// The directory has no `oci-layout` file.
    NotOciLayout,
    /// No image carries the tag asked for.
    NoSuchTag {
        /// The tag asked for.
        tag: String,
        /// The tags there are.
        tags: String,
    },
    /// The layout holds several images and no tag was given.
    SeveralImages {
        /// The layout directory.
        dir: PathBuf,
        /// The tags there are.
        tags: String,
    },
    /// An image index without a manifest for this machine (`linux/<arch>`).
    NoImageForArch(&'static str),
    /// A manifest without layers.
    NoLayers,
    /// The archive has no `manifest.json`.
    NotDockerArchive,
    /// `manifest.json` lists no image.
    NoImageInManifest,
    /// A layer path of `manifest.json` that leaves the archive (`..`, absolute).
    LayerOutside {
        /// The layer path.
        layer: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A layer `manifest.json` lists is not in the archive.
    MissingLayer(String),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "not the JSON expected: {e}"),
            Self::MalformedDigest(d) => write!(f, "malformed digest {d:?}"),
            Self::UnsupportedDigest(d) => write!(f, "unsupported digest {d:?} (sha256 only)"),
            Self::MissingBlob(d) => {
                write!(f, "missing blob {d} (a layer or manifest was not copied?)")
            }
            Self::CorruptBlob { expected, actual } => {
                write!(f, "corrupt blob: its sha256 is {actual}, not {expected}")
            }
            Self::NotOciLayout => f.write_str("not an OCI image layout (no oci-layout file)"),
            Self::NoSuchTag { tag, tags } => write!(f, "no image tagged {tag:?} (tags: {tags})"),
            Self::SeveralImages { dir, tags } => {
                write!(
                    f,
                    "several images: name one as oci:{}:<tag> (tags: {tags})",
                    dir.display()
                )
            }
            Self::NoImageForArch(arch) => write!(f, "no linux/{arch} image in the index"),
            Self::NoLayers => f.write_str("the image has no layers"),
            Self::NotDockerArchive => f.write_str("not a `docker save` archive (no manifest.json)"),
            Self::NoImageInManifest => f.write_str("manifest.json lists no image"),
            Self::LayerOutside { layer, why } => write!(f, "layer {layer:?}: {why}"),
            Self::MissingLayer(l) => write!(f, "missing layer {l}"),
        }
    }
}

impl std::error::Error for ImageError {}

fn bad(path: &Path, reason: ImageError) -> RootfsError {
    RootfsError::Image {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads a JSON file of the format into `T`. (miniserde, not serde_json: nothing in nstest's
/// dependencies may add trait impls on std types, such as serde_json's `PartialEq` between
/// its `Value` and integers, which change how a user's `assert_eq!` infers its types.)
fn read_json<T: Deserialize>(path: &Path) -> Result<T, RootfsError> {
    let text = std::fs::read_to_string(path).map_err(|e| RootfsError::Read {
        path: path.into(),
        source: Arc::new(e),
    })?;
    miniserde::json::from_str(&text).map_err(|_| {
        bad(
            path,
            ImageError::NotJson(format!(
                "{} bytes that do not parse as this format's JSON",
                text.len()
            )),
        )
    })
}

/// The blob of `digest` (`sha256:<hex>`) in the layout at `dir`, checked against its digest.
fn blob(dir: &Path, digest: &str) -> Result<PathBuf, RootfsError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(dir, ImageError::MalformedDigest(digest.into())))?;
    if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(dir, ImageError::UnsupportedDigest(digest.into())));
    }
    let path = dir.join("blobs").join(alg).join(hex);
    if !path.is_file() {
        return Err(bad(dir, ImageError::MissingBlob(digest.into())));
    }
    let actual = sha256_file(&path)?;
    if actual != hex {
        let expected = hex.to_string();
        return Err(bad(&path, ImageError::CorruptBlob { expected, actual }));
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
    Ok(crate::protocol::hex(&h.finalize()))
}

pub(crate) fn this_arch() -> &'static str {
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
        return Err(bad(dir, ImageError::NotOciLayout));
    }
    let index: Index = read_json(&dir.join("index.json"))?;
    let pick = |ms: &[Descriptor]| -> Result<Descriptor, RootfsError> {
        let named: Vec<&Descriptor> = match tag {
            Some(t) => ms
                .iter()
                .filter(|m| {
                    m.ref_name()
                        .is_some_and(|r| r == t || r.ends_with(&format!(":{t}")))
                })
                .collect(),
            None => ms.iter().collect(),
        };
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(bad(
                dir,
                ImageError::NoSuchTag {
                    tag: tag.unwrap_or("").into(),
                    tags: tags(ms),
                },
            )),
            _ => Err(bad(
                dir,
                ImageError::SeveralImages {
                    dir: dir.to_path_buf(),
                    tags: tags(ms),
                },
            )),
        }
    };
    let mut desc = pick(&index.manifests)?;
    // An image index: take the manifest for this machine.
    while desc
        .media_type
        .as_deref()
        .is_some_and(|t| t.contains("index"))
    {
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
            .ok_or_else(|| bad(dir, ImageError::NoImageForArch(this_arch())))?;
    }
    Ok(desc.digest)
}

fn tags(ms: &[Descriptor]) -> String {
    let t: Vec<&str> = ms.iter().filter_map(Descriptor::ref_name).collect();
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
        return Err(bad(dir, ImageError::NoLayers));
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
    build_docker_unpacked(archive, scratch, dest, owners)
}

/// What an unpacked archive holds, by its top-level entries: a `docker save` archive (a
/// `manifest.json`; Docker 25+ writes an OCI layout beside it), an OCI image layout packed as a
/// tar (`oci-layout`, as skopeo's `oci-archive:` writes it), or a root filesystem (anything
/// else, or anything with `bin`, `etc` or `usr` at the top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unpacked {
    Rootfs,
    DockerSave,
    OciLayout,
}

/// What the archive unpacked at `dir` is (see [`Unpacked`]).
pub(crate) fn kind_of_unpacked(dir: &Path) -> Unpacked {
    let has = |n: &str| std::fs::symlink_metadata(dir.join(n)).is_ok();
    if ["bin", "etc", "usr"].iter().any(|d| has(d)) {
        Unpacked::Rootfs
    } else if dir.join("manifest.json").is_file() {
        Unpacked::DockerSave
    } else if dir.join("oci-layout").is_file() && dir.join("index.json").is_file() {
        Unpacked::OciLayout
    } else {
        Unpacked::Rootfs
    }
}

/// Builds `dest` from the image of an OCI layout unpacked at `dir` from `archive` (the one image
/// it holds).
pub(crate) fn build_oci_unpacked(
    dir: &Path,
    dest: &Path,
    owners: &mut Owners,
) -> Result<(), RootfsError> {
    let digest = oci_manifest(dir, None)?;
    build_oci(dir, &digest, dest, owners)
}

/// Builds `dest` from a `docker save` archive already unpacked at `scratch` (its first image's
/// layers, in order); `archive` names it in errors.
pub(crate) fn build_docker_unpacked(
    archive: &Path,
    scratch: &Path,
    dest: &Path,
    owners: &mut Owners,
) -> Result<(), RootfsError> {
    let manifest = scratch.join("manifest.json");
    if !manifest.is_file() {
        return Err(bad(archive, ImageError::NotDockerArchive));
    }
    let images: Vec<SaveEntry> = read_json(&manifest)?;
    let image = images
        .first()
        .ok_or_else(|| bad(archive, ImageError::NoImageInManifest))?;
    for layer in &image.layers {
        unpack::check_inside(Path::new(layer)).map_err(|why| {
            let layer = layer.clone();
            bad(archive, ImageError::LayerOutside { layer, why })
        })?;
        let path = scratch.join(layer);
        if !path.is_file() {
            return Err(bad(archive, ImageError::MissingLayer(layer.clone())));
        }
        unpack::apply_layer(&path, dest, owners)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{oci_manifest, ImageError, RootfsError};

    #[test]
    fn an_index_that_is_not_the_formats_json_is_refused_saying_which_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        for text in [
            "{",
            r#"{"manifests": 3}"#,
            r#"{"manifests":[{"mediaType":"x"}]}"#,
        ] {
            std::fs::write(dir.path().join("index.json"), text).unwrap();
            match oci_manifest(dir.path(), None) {
                Err(RootfsError::Image {
                    path,
                    reason: ImageError::NotJson(_),
                }) => assert!(path.ends_with("index.json")),
                other => panic!("{text}: {other:?}"),
            }
        }
        // Fields the format may add, and optional ones left out, are fine.
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"new":{"x":[1,2.5,null,true]},"manifests":[{"digest":"sha256:ab","size":1}]}"#,
        )
        .unwrap();
        assert_eq!(oci_manifest(dir.path(), None).unwrap(), "sha256:ab");
    }
}
