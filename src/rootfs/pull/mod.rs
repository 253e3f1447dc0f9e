//! Images by name: `docker://[registry/]repo[:tag][@sha256:digest]`, pulled from a registry
//! once, verified, and kept.
//!
//! The store is `<cache>/images/`, an OCI image layout (`oci-layout`, `blobs/sha256/<hex>`) of
//! every manifest, config and layer pulled, each written only once its content has the digest
//! it is named by; `refs/<registry>/<repository>/<tag>` keeps the digest a tag resolved to for
//! this machine's platform, as Docker's local image store does: later runs use it without the
//! network, and stay on that image (`NSTEST_PULL=always` resolves the tag again). A pull holds
//! `images/pull.lock`, so that processes pulling the same image at once download it once.

mod auth;
mod client;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use miniserde::Deserialize;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::RootfsError;
use crate::spec::ImageRef;

/// Why an image could not be pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullError {
    /// The registry has no such repository, tag or blob (HTTP 404).
    NotFound(String),
    /// The registry refused the credentials, or asked for some and none were found (HTTP 401
    /// or 403).
    Refused(i32),
    /// The registry could not be reached (DNS, connection, TLS, a broken transfer).
    Unreachable(String),
    /// The registry answered with another status.
    Http {
        /// What was asked for.
        what: String,
        /// The HTTP status.
        status: i32,
    },
    /// Content whose digest is not the one it was asked by: refused, nothing kept.
    DigestMismatch {
        /// What was asked for.
        what: String,
        /// The digest of what came.
        actual: String,
    },
    /// An image index without an image for this machine.
    NoPlatform {
        /// `linux/<arch>`.
        wanted: String,
        /// The platforms it has.
        has: String,
    },
    /// A manifest that is not what the format says.
    BadManifest(String),
    /// The store in the cache could not be written.
    Store(String),
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(what) => write!(
                f,
                "the registry has no {what}: check the repository and the tag (a private repository answers so too without credentials)"
            ),
            Self::Refused(status) => write!(
                f,
                "the registry refused access (HTTP {status}): log in (`docker login`, `podman login`) or check the credentials in $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json"
            ),
            Self::Unreachable(e) => write!(
                f,
                "cannot reach the registry ({e}); an image pulled before is used offline by its tag"
            ),
            Self::Http { what, status } => {
                write!(f, "the registry answered HTTP {status} for {what}")
            }
            Self::DigestMismatch { what, actual } => write!(
                f,
                "{what} came with another digest ({actual}): refused, nothing was kept"
            ),
            Self::NoPlatform { wanted, has } => {
                write!(f, "no {wanted} image in the index (it has: {has})")
            }
            Self::BadManifest(e) => write!(f, "not the manifest the format says: {e}"),
            Self::Store(e) => write!(f, "cannot write the image store: {e}"),
        }
    }
}

impl std::error::Error for PullError {}

#[derive(Deserialize)]
struct Doc {
    manifests: Option<Vec<Desc>>,
    config: Option<Desc>,
    layers: Option<Vec<Desc>>,
}

#[derive(Deserialize)]
struct Desc {
    digest: String,
    size: Option<u64>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// The image `r` in the store (pulled now if the store lacks it): the store's directory, an OCI
/// layout, and the digest of the image's manifest for this machine.
pub(crate) fn pull(cache: &Cache, r: &ImageRef) -> Result<(PathBuf, String), RootfsError> {
    let error = |reason| RootfsError::Pull {
        reference: r.to_string(),
        reason,
    };
    let store = cache.root().join("images");
    init_store(&store).map_err(error)?;
    if let Some(d) = known(&store, r).filter(|d| complete(&store, d)) {
        return Ok((store, d));
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(store.join("pull.lock"))
        .map_err(|e| error(PullError::Store(e.to_string())))?;
    let _held = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| error(PullError::Store(format!("flock(pull.lock) => {e}"))))?;
    // Pulled by another process while this one waited?
    if let Some(d) = known(&store, r).filter(|d| complete(&store, d)) {
        return Ok((store, d));
    }
    let digest = fetch(&store, r).map_err(error)?;
    Ok((store, digest))
}

/// The store's layout and directories.
fn init_store(store: &Path) -> Result<(), PullError> {
    let io = |e: std::io::Error| PullError::Store(format!("{}: {e}", store.display()));
    std::fs::create_dir_all(store.join("blobs/sha256")).map_err(io)?;
    std::fs::create_dir_all(store.join("refs")).map_err(io)?;
    let layout = store.join("oci-layout");
    if !layout.exists() {
        std::fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
    }
    // The layout's index lists nothing: images are found by digest.
    let index = store.join("index.json");
    if !index.exists() {
        std::fs::write(&index, r#"{"schemaVersion":2,"manifests":[]}"#).map_err(io)?;
    }
    Ok(())
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    store
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap_or(digest))
}

/// Where the digest a tag resolved to is kept.
fn ref_path(store: &Path, r: &ImageRef, tag: &str) -> PathBuf {
    store
        .join("refs")
        .join(r.registry.replace([':', '[', ']'], "_"))
        .join(r.repository())
        .join(tag)
}

/// The manifest digest for this machine the store already knows for `r`: by its digest (an
/// index resolved through the stored index), or by the tag's kept digest.
fn known(store: &Path, r: &ImageRef) -> Option<String> {
    let top = match (&r.digest, &r.tag) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) if !crate::settings::pull_always() => {
            std::fs::read_to_string(ref_path(store, r, t))
                .ok()?
                .trim()
                .to_string()
        }
        _ => return None,
    };
    let doc: Doc = parse(&std::fs::read(blob_path(store, &top)).ok()?).ok()?;
    match doc.manifests {
        Some(list) => platform_manifest(&list).ok(),
        None => Some(top),
    }
}

/// Whether the store has the manifest `digest` and everything it names.
fn complete(store: &Path, digest: &str) -> bool {
    let Ok(bytes) = std::fs::read(blob_path(store, digest)) else {
        return false;
    };
    let Ok(doc) = parse(&bytes) else {
        return false;
    };
    doc.layers.is_some_and(|ls| {
        ls.iter()
            .chain(doc.config.iter())
            .all(|l| blob_path(store, &l.digest).is_file())
    })
}

fn parse(bytes: &[u8]) -> Result<Doc, PullError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| PullError::BadManifest("not UTF-8".into()))?;
    miniserde::json::from_str(text).map_err(|_| PullError::BadManifest("not its JSON".into()))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The digest of the index entry for `linux/<this machine's architecture>`.
fn platform_manifest(list: &[Desc]) -> Result<String, PullError> {
    let arch = super::image::this_arch();
    list.iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .map(|m| m.digest.clone())
        .ok_or_else(|| PullError::NoPlatform {
            wanted: format!("linux/{arch}"),
            has: list
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Keeps `bytes` as the blob `digest` (already verified).
fn keep(store: &Path, digest: &str, bytes: &[u8]) -> Result<(), PullError> {
    let path = blob_path(store, digest);
    let tmp = path.with_extension(format!("part.{}", std::process::id()));
    let io = |e: std::io::Error| PullError::Store(format!("{}: {e}", path.display()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Resolves `r` at the registry, fetches what the store lacks, keeps the tag's digest; the
/// digest of the manifest for this machine.
fn fetch(store: &Path, r: &ImageRef) -> Result<String, PullError> {
    let started = Instant::now();
    let mut client = client::Client::new(r);
    let asked = r.digest.as_deref().or(r.tag.as_deref()).unwrap_or("latest");
    let (body, _) = client.manifest(asked)?;
    let top = sha256(&body);
    if let Some(d) = &r.digest {
        if *d != top {
            return Err(PullError::DigestMismatch {
                what: format!("manifest {d}"),
                actual: top,
            });
        }
    }
    let doc = parse(&body)?;
    keep(store, &top, &body)?;
    let (digest, doc) = match &doc.manifests {
        Some(list) => {
            let digest = platform_manifest(list)?;
            let (body, _) = client.manifest(&digest)?;
            let actual = sha256(&body);
            if actual != digest {
                return Err(PullError::DigestMismatch {
                    what: format!("manifest {digest}"),
                    actual,
                });
            }
            let doc = parse(&body)?;
            keep(store, &digest, &body)?;
            (digest, doc)
        }
        None => (top, doc),
    };
    let layers = doc
        .layers
        .ok_or_else(|| PullError::BadManifest("no layers".into()))?;
    let missing: Vec<&Desc> = layers
        .iter()
        .chain(doc.config.iter())
        .filter(|l| !blob_path(store, &l.digest).is_file())
        .collect();
    let total: u64 = missing.iter().filter_map(|l| l.size).sum();
    eprintln!(
        "nstest: pulling {r}: {} of {} blobs to fetch, {}",
        missing.len(),
        layers.len() + usize::from(doc.config.is_some()),
        mib(total)
    );
    for (i, l) in missing.iter().enumerate() {
        let dest = blob_path(store, &l.digest);
        let tmp = dest.with_extension(format!("part.{}", std::process::id()));
        // A long download says how far it is, every few seconds.
        let mut said = Instant::now();
        let mut progress = |got: u64| {
            if said.elapsed().as_secs() >= 3 {
                said = Instant::now();
                let of = l
                    .size
                    .map(|s| format!(" of {}", mib(s)))
                    .unwrap_or_default();
                eprintln!(
                    "nstest: {r}: {}/{} {}{of} …",
                    i + 1,
                    missing.len(),
                    mib(got)
                );
            }
        };
        let size = client.blob(&l.digest, &tmp, &dest, &mut progress)?;
        eprintln!(
            "nstest: {r}: {}/{} {} ({})",
            i + 1,
            missing.len(),
            l.digest,
            mib(size)
        );
    }
    if let (None, Some(tag)) = (&r.digest, &r.tag) {
        let path = ref_path(store, r, tag);
        let io = |e: std::io::Error| PullError::Store(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(path.parent().unwrap_or(store)).map_err(io)?;
        let tmp = path.with_extension(format!("part.{}", std::process::id()));
        std::fs::write(&tmp, &digest).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
    }
    eprintln!(
        "nstest: pulled {r} ({digest}) in {} ms",
        started.elapsed().as_millis()
    );
    Ok(digest)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::{parse, platform_manifest, PullError};

    #[test]
    fn an_index_gives_this_machines_image_or_names_what_it_has() {
        let arch = crate::rootfs::image::this_arch();
        let index = format!(
            r#"{{"manifests":[{{"digest":"sha256:aa","platform":{{"architecture":"s390x","os":"linux"}}}},{{"digest":"sha256:bb","platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#
        );
        let list = parse(index.as_bytes()).unwrap().manifests.unwrap();
        assert_eq!(platform_manifest(&list).unwrap(), "sha256:bb");
        let other = parse(br#"{"manifests":[{"digest":"sha256:aa","platform":{"architecture":"s390x","os":"linux"}}]}"#)
            .unwrap()
            .manifests
            .unwrap();
        match platform_manifest(&other) {
            Err(e @ PullError::NoPlatform { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("no linux/{arch} image in the index (it has: linux/s390x)")
                )
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(parse(b"{"), Err(PullError::BadManifest(_))));
    }
}
