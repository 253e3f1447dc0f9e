//! Credentials for a registry, from where container tools keep them: `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json` (podman, skopeo, buildah), `~/.docker/config.json`
//! (docker): their `auths` entries, `{"<registry>": {"auth": "<base64 of user:password>"}}`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use miniserde::Deserialize;

#[derive(Deserialize)]
struct AuthFile {
    auths: Option<BTreeMap<String, Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
}

/// `user:password` for `registry` (as the reference names it), base64-encoded as HTTP's Basic
/// scheme wants it, from the first file that has an entry for it.
pub(super) fn basic_for(registry: &str) -> Option<String> {
    files().into_iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        let file: AuthFile = miniserde::json::from_str(&text).ok()?;
        let (_, entry) = file
            .auths?
            .into_iter()
            .find(|(k, _)| same_registry(k, registry))?;
        let auth = entry.auth?;
        // Kept only if it decodes to `user:password`.
        let plain = base64::engine::general_purpose::STANDARD
            .decode(&auth)
            .ok()?;
        plain.contains(&b':').then_some(auth)
    })
}

/// The files to look in, in order.
fn files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        v.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    v
}

/// Whether an `auths` key names `registry`: keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`, Docker Hub's), which are not part of the name.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

#[cfg(test)]
mod tests {
    use super::same_registry;

    #[test]
    fn auth_keys_name_registries_with_or_without_scheme_and_path() {
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("docker.io", "docker.io"));
        assert!(same_registry("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(same_registry("http://127.0.0.1:5000/", "127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5001", "127.0.0.1:5000"));
        assert!(!same_registry("ghcr.io", "docker.io"));
    }
}
