//! The registry's HTTP API (the OCI distribution spec): manifests and blobs of one repository,
//! behind an auth challenge answered once (an anonymous or credentialed bearer token, or basic
//! credentials), over HTTPS but for a loopback registry or one in `NSTEST_INSECURE_REGISTRIES`.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{auth, PullError};
use crate::spec::ImageRef;

/// How long a manifest request, and each read of a blob, may take.
const TIMEOUT_SECS: u64 = 60;

/// What nstest accepts as a manifest: an image index (list), or one image's manifest.
pub(super) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// One repository of one registry.
pub(super) struct Client {
    /// `https://host[:port]` (or `http://` for a loopback or listed registry).
    base: String,
    repo: String,
    /// The `Authorization` header, once the challenge is answered.
    authorization: Option<String>,
    /// `user:password` in base64, where a credentials file has it.
    basic: Option<String>,
}

impl Client {
    pub(super) fn new(r: &ImageRef) -> Self {
        let host = r.api_host();
        let scheme = if insecure(&r.registry) {
            "http"
        } else {
            "https"
        };
        Self {
            base: format!("{scheme}://{host}"),
            repo: r.repository(),
            authorization: None,
            basic: auth::basic_for(&r.registry),
        }
    }

    /// The manifest `reference` (a tag or a digest) and its media type.
    pub(super) fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), PullError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repo);
        let mut res = self.get(&url, ACCEPT, &format!("manifest {reference}"))?;
        let kind = res.headers.get("content-type").cloned().unwrap_or_default();
        let mut body = Vec::new();
        res.read_to_end(&mut body)
            .map_err(|e| PullError::Unreachable(format!("{url}: {e}")))?;
        Ok((body, kind))
    }

    /// Downloads the blob `digest` (`sha256:<hex>`) into `dest`, through `tmp`, verified: a
    /// blob whose content has another digest is refused and nothing is left. Its size;
    /// `progress` hears the bytes so far as they come.
    pub(super) fn blob(
        &mut self,
        digest: &str,
        tmp: &Path,
        dest: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, PullError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo);
        let mut res = self.get(&url, "*/*", &format!("blob {digest}"))?;
        let io = |e: std::io::Error| PullError::Store(format!("{}: {e}", tmp.display()));
        let mut out = std::fs::File::create(tmp).map_err(io)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        let copied = loop {
            match res.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    h.update(&buf[..n]);
                    size += n as u64;
                    progress(size);
                    if let Err(e) = out.write_all(&buf[..n]) {
                        break Err(io(e));
                    }
                }
                Err(e) => break Err(PullError::Unreachable(format!("{url}: {e}"))),
            }
        };
        let actual = format!("sha256:{:x}", h.finalize());
        let result = copied.and_then(|()| {
            if actual == digest {
                out.sync_all().map_err(io)?;
                std::fs::rename(tmp, dest).map_err(io)
            } else {
                Err(PullError::DigestMismatch {
                    what: format!("blob {digest}"),
                    actual: actual.clone(),
                })
            }
        });
        if result.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        result.map(|()| size)
    }

    /// GET `url`, answering the registry's auth challenge once and following redirects by hand
    /// (credentials go to the registry only, never to where it redirects); the response of a
    /// 200. `what` names the object in errors.
    fn get(
        &mut self,
        url: &str,
        accept: &str,
        what: &str,
    ) -> Result<minreq::ResponseLazy, PullError> {
        let mut url = url.to_string();
        let mut challenged = false;
        for _ in 0..10 {
            let same_host = url.starts_with(&format!("{}/", self.base));
            let mut req = minreq::get(url.as_str())
                .with_header("Accept", accept)
                .with_header("User-Agent", "nstest")
                .with_timeout(TIMEOUT_SECS)
                .with_follow_redirects(false);
            if let (Some(a), true) = (&self.authorization, same_host) {
                req = req.with_header("Authorization", a.as_str());
            }
            let res = req
                .send_lazy()
                .map_err(|e| PullError::Unreachable(format!("{url}: {e}")))?;
            match res.status_code {
                200 => return Ok(res),
                301 | 302 | 303 | 307 | 308 => {
                    let Some(to) = res.headers.get("location") else {
                        return Err(PullError::Http {
                            what: what.to_string(),
                            status: res.status_code,
                        });
                    };
                    url = if to.starts_with("http://") || to.starts_with("https://") {
                        to.clone()
                    } else {
                        format!("{}{to}", self.base)
                    };
                }
                401 if !challenged && same_host => {
                    challenged = true;
                    let challenge = res
                        .headers
                        .get("www-authenticate")
                        .cloned()
                        .unwrap_or_default();
                    self.authorization = Some(self.answer(&challenge)?);
                }
                401 | 403 => return Err(PullError::Refused(res.status_code)),
                404 => return Err(PullError::NotFound(what.to_string())),
                status => {
                    return Err(PullError::Http {
                        what: what.to_string(),
                        status,
                    })
                }
            }
        }
        Err(PullError::Http {
            what: format!("{what} (redirected ten times)"),
            status: 310,
        })
    }

    /// The `Authorization` header that answers `challenge`: a bearer token from the realm it
    /// names (with the credentials, where there are some), or the basic credentials.
    fn answer(&self, challenge: &str) -> Result<String, PullError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return match &self.basic {
                Some(b) => Ok(format!("Basic {b}")),
                None => Err(PullError::Refused(401)),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(PullError::Refused(401));
        }
        let param = |name: &str| challenge_param(params, name);
        let realm = param("realm").ok_or(PullError::Refused(401))?;
        let scope = param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repo));
        let mut req = minreq::get(realm.as_str())
            .with_param("scope", scope)
            .with_header("User-Agent", "nstest")
            .with_timeout(TIMEOUT_SECS);
        if let Some(service) = param("service") {
            req = req.with_param("service", service);
        }
        if let Some(b) = &self.basic {
            req = req.with_header("Authorization", format!("Basic {b}"));
        }
        let res = req
            .send()
            .map_err(|e| PullError::Unreachable(format!("{realm}: {e}")))?;
        match res.status_code {
            200 => {}
            401 | 403 => return Err(PullError::Refused(res.status_code)),
            status => {
                return Err(PullError::Http {
                    what: format!("a token from {realm}"),
                    status,
                })
            }
        }
        #[derive(miniserde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let text = res.as_str().unwrap_or("");
        let t: Token = miniserde::json::from_str(text)
            .map_err(|_| PullError::BadManifest(format!("the token from {realm} is not JSON")))?;
        let token = t.token.or(t.access_token).ok_or(PullError::Refused(401))?;
        Ok(format!("Bearer {token}"))
    }
}

/// The value of `name="…"` among a challenge's comma-separated parameters.
fn challenge_param(params: &str, name: &str) -> Option<String> {
    params.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Whether `registry` (host[:port]) is spoken to in plain HTTP: a loopback address, as Docker
/// allows, or one listed in `NSTEST_INSECURE_REGISTRIES`.
pub(super) fn insecure(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || crate::settings::insecure_registries()
            .iter()
            .any(|r| r == registry)
}

#[cfg(test)]
mod tests {
    use super::{challenge_param, insecure};

    #[test]
    fn a_bearer_challenge_names_its_realm_service_and_scope() {
        let p = r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            challenge_param(p, "realm").as_deref(),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(
            challenge_param(p, "service").as_deref(),
            Some("registry.docker.io")
        );
        assert_eq!(
            challenge_param(p, "scope").as_deref(),
            Some("repository:library/alpine:pull")
        );
        assert_eq!(challenge_param(p, "error"), None);
    }

    #[test]
    fn loopback_registries_are_plain_http_and_others_are_not() {
        for r in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.3.4.5",
        ] {
            assert!(insecure(r), "{r}");
        }
        for r in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.example:5000",
        ] {
            assert!(!insecure(r), "{r}");
        }
    }
}
