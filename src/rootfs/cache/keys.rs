//! A source's key: the digest of its content, remembered per file so that a process does not
//! hash it again.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Cache, FORMAT};
use crate::rootfs::RootfsError;

impl Cache {
    /// [`file_key`] of `path`, remembered in `keys/` under the file's device, inode, size,
    /// mtime and ctime: every process of a run needs the key (with `cargo nextest`, every test
    /// is a process), and hashing the file each time costs time that grows with its size. Any
    /// write to the file changes its ctime, so a remembered key is never that of older content;
    /// a file changed within the last two seconds is hashed and not remembered (its next write
    /// could land within the same timestamp), nor is one whose times have no nanoseconds.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("nstest-doc-key-{}", std::process::id()));
    /// let cache = nstest::rootfs::cache::Cache::open(dir.join("cache")).unwrap();
    /// std::fs::write(dir.join("f"), b"content").unwrap();
    /// let key = cache.file_key("tar", &dir.join("f")).unwrap();
    /// assert_eq!(key, nstest::rootfs::cache::file_key("tar", &dir.join("f")).unwrap());
    /// # std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn file_key(&self, prefix: &str, path: &Path) -> Result<String, RootfsError> {
        let Ok(before) = fs::metadata(path) else {
            return file_key(prefix, path); // names the error
        };
        if let Some(key) = self.remembered(prefix, &before) {
            return Ok(key);
        }
        let name = memo_name(prefix, &before);
        let key = file_key(prefix, path)?;
        let unchanged = fs::metadata(path).is_ok_and(|after| memo_name(prefix, &after) == name);
        if unchanged && settled(&before, std::time::SystemTime::now()) {
            self.remember(&name, &key);
        }
        Ok(key)
    }

    /// [`derived_key`] of `path`'s [`Cache::file_key`] and `extra` (of the text
    /// `<file key>/<extra>`), remembered beside the file's key and under the same identity and
    /// times: a process that finds it hashes nothing (every test process of a `cargo nextest`
    /// run looks up the default rootfs's key).
    pub(crate) fn derived_file_key(
        &self,
        prefix: &str,
        path: &Path,
        extra: &str,
    ) -> Result<String, RootfsError> {
        match self.remembered_derived_key(prefix, path, extra) {
            Some(derived) => Ok(derived),
            None => Ok(derive(prefix, &self.file_key(prefix, path)?, extra)),
        }
    }

    /// The key [`Cache::derived_file_key`] makes for `path` and `extra` as the file is now, if
    /// the cache remembers it or the file's own key (then it is derived, and remembered too):
    /// reads no more than two small files, and hashes no file.
    pub(crate) fn remembered_derived_key(
        &self,
        prefix: &str,
        path: &Path,
        extra: &str,
    ) -> Option<String> {
        let m = fs::metadata(path).ok()?;
        let name = memo_name(&format!("{prefix}.{extra}"), &m);
        self.recall(&name, prefix).or_else(|| {
            // Only where the file's own key is remembered: its content is that key's.
            let derived = derive(prefix, &self.remembered(prefix, &m)?, extra);
            self.remember(&name, &derived);
            Some(derived)
        })
    }

    /// Remembers `key` in `keys/<name>`, written whole or not at all. Best effort: without it
    /// the next process works the key out again.
    fn remember(&self, name: &str, key: &str) {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("key-{name}.{}", crate::sys::owner_tag()));
        let _ = fs::create_dir_all(self.root.join("keys"))
            .and_then(|()| fs::write(&tmp, key))
            .and_then(|()| fs::rename(&tmp, self.root.join("keys").join(name)))
            .inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            });
    }

    /// The key [`Cache::file_key`] has remembered for `path` as it is now, if any: reads no
    /// more than one small file, writes nothing.
    pub(crate) fn remembered_key(&self, prefix: &str, path: &Path) -> Option<String> {
        self.remembered(prefix, &fs::metadata(path).ok()?)
    }

    fn remembered(&self, prefix: &str, m: &fs::Metadata) -> Option<String> {
        self.recall(&memo_name(prefix, m), prefix)
    }

    /// The key of `prefix` remembered in `keys/<name>`, if that holds one.
    fn recall(&self, name: &str, prefix: &str) -> Option<String> {
        let key = fs::read_to_string(self.root.join("keys").join(name)).ok()?;
        is_key(prefix, &key).then_some(key)
    }
}

/// The key [`Cache::derived_file_key`] derives from a file's `key` and `extra`.
fn derive(prefix: &str, key: &str, extra: &str) -> String {
    derived_key(prefix, &format!("{key}/{extra}"))
}

/// The name a file's key is remembered under: its identity and times.
fn memo_name(prefix: &str, m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{prefix}-{:x}-{:x}-{}-{}.{}-{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Whether `s` is a key [`file_key`] makes with `prefix`.
fn is_key(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the file's last change is far enough behind `now` (two seconds) that a change to
/// come cannot carry the same mtime and ctime. Never on a filesystem that keeps whole seconds
/// (both nanosecond parts 0), where a clock stepped back could repeat them.
fn settled(m: &fs::Metadata, now: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    settled_at(
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
        now,
    )
}

/// [`settled`] for an mtime and a ctime as (seconds, nanoseconds).
fn settled_at(mtime: (i64, i64), ctime: (i64, i64), now: std::time::SystemTime) -> bool {
    use std::time::{Duration, UNIX_EPOCH};
    if mtime.1 == 0 && ctime.1 == 0 {
        return false;
    }
    let at = |(secs, nsec): (i64, i64)| {
        UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsec.clamp(0, 999_999_999) as u32)
    };
    now.duration_since(at(mtime).max(at(ctime)))
        .is_ok_and(|age| age >= Duration::from_secs(2))
}

/// A key derived from other text (a key and what else makes the entry): `<prefix>-<sha256>`.
pub fn derived_key(prefix: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(text.as_bytes());
    keyed(prefix, h)
}

/// The cache key of a file's content: `<prefix>-<sha256>`.
///
/// ```no_run
/// let key = nstest::rootfs::cache::file_key("tar", std::path::Path::new("alpine.tar.gz"))?;
/// assert!(key.starts_with("tar-"));
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn file_key(prefix: &str, path: &Path) -> Result<String, RootfsError> {
    let read_err = |e| RootfsError::Read {
        path: path.to_path_buf(),
        source: Arc::new(e),
    };
    let mut f = File::open(path).map_err(read_err)?;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(keyed(prefix, h))
}

/// `<prefix>-<the first 16 bytes of the digest, in hex>`.
fn keyed(prefix: &str, h: Sha256) -> String {
    format!("{prefix}-{}", crate::protocol::hex(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_key_is_remembered_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("nstest-keys-{}", std::process::id()));
        let cache = Cache::open(dir.join("cache")).unwrap();
        // Written when the repository was checked out: long settled.
        let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        // A look that hashes nothing finds nothing before the first key is remembered.
        assert_eq!(cache.remembered_key("tar", &old), None);
        let key = cache.file_key("tar", &old).unwrap();
        assert_eq!(cache.remembered_key("tar", &old), Some(key.clone()));
        assert_eq!(key, file_key("tar", &old).unwrap());
        let memo = dir
            .join("cache/keys")
            .join(memo_name("tar", &fs::metadata(&old).unwrap()));
        assert_eq!(fs::read_to_string(&memo).unwrap(), key);
        // The remembered key is what a later call gets: the file is not read again.
        let planted = format!("tar-{}", "0".repeat(32));
        fs::write(&memo, &planted).unwrap();
        assert_eq!(cache.file_key("tar", &old).unwrap(), planted);
        assert_eq!(cache.remembered_key("tar", &old), Some(planted.clone()));
        // A memo that is not a key of this prefix is ignored.
        fs::write(&memo, "junk").unwrap();
        assert_eq!(cache.remembered_key("tar", &old), None);
        assert_eq!(cache.file_key("tar", &old).unwrap(), key);
        fs::write(&memo, &planted).unwrap();
        assert_eq!(
            cache.file_key("busybox", &old).unwrap(),
            file_key("busybox", &old).unwrap()
        );

        // A file written just now is hashed and not remembered, and each write is seen.
        let fresh = dir.join("fresh");
        fs::write(&fresh, "one").unwrap();
        let one = cache.file_key("tar", &fresh).unwrap();
        fs::write(&fresh, "two").unwrap();
        let two = cache.file_key("tar", &fresh).unwrap();
        assert_ne!(one, two);
        assert_eq!(two, file_key("tar", &fresh).unwrap());
        let remembered = fs::read_dir(dir.join("cache/keys")).unwrap().count();
        assert_eq!(remembered, 2, "the two keys of the settled file only");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_derived_key_is_remembered_beside_the_file_key_it_comes_from() {
        let dir = std::env::temp_dir().join(format!("nstest-derived-{}", std::process::id()));
        let cache = Cache::open(dir.join("cache")).unwrap();
        let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let want = derived_key("bb", &format!("{}/layout-9", file_key("bb", &old).unwrap()));
        // Nothing remembered yet: nothing found without hashing.
        assert_eq!(cache.remembered_derived_key("bb", &old, "layout-9"), None);
        assert_eq!(
            cache.derived_file_key("bb", &old, "layout-9").unwrap(),
            want
        );
        assert_eq!(
            cache.remembered_derived_key("bb", &old, "layout-9"),
            Some(want.clone())
        );
        let m = fs::metadata(&old).unwrap();
        let memo = dir.join("cache/keys").join(memo_name("bb.layout-9", &m));
        assert_eq!(fs::read_to_string(&memo).unwrap(), want);
        // Found as remembered: a planted one is what comes back; another extra is another key.
        let planted = format!("bb-{}", "1".repeat(32));
        fs::write(&memo, &planted).unwrap();
        assert_eq!(
            cache.remembered_derived_key("bb", &old, "layout-9"),
            Some(planted)
        );
        assert_ne!(
            cache.remembered_derived_key("bb", &old, "layout-8"),
            Some(want.clone())
        );
        // Without its own memo, it is derived from the file's remembered key, and remembered.
        fs::write(&memo, "junk").unwrap();
        assert_eq!(
            cache.remembered_derived_key("bb", &old, "layout-9"),
            Some(want.clone())
        );
        assert_eq!(fs::read_to_string(&memo).unwrap(), want);
        // A file written just now: neither key remembered, the derived one still right.
        let fresh = dir.join("fresh");
        fs::write(&fresh, "one").unwrap();
        let key = cache.derived_file_key("bb", &fresh, "layout-9").unwrap();
        assert_eq!(
            key,
            derived_key(
                "bb",
                &format!("{}/layout-9", file_key("bb", &fresh).unwrap())
            )
        );
        assert_eq!(cache.remembered_derived_key("bb", &fresh, "layout-9"), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_is_settled_two_seconds_after_its_last_change() {
        let f = std::env::temp_dir().join(format!("nstest-settled-{}", std::process::id()));
        fs::write(&f, "x").unwrap();
        let m = fs::metadata(&f).unwrap();
        let now = std::time::SystemTime::now();
        assert!(!settled(&m, now));
        assert!(!settled(&m, now + std::time::Duration::from_millis(1500)));
        assert!(settled(&m, now + std::time::Duration::from_secs(3)));
        fs::remove_file(&f).unwrap();
        // Whole seconds only (a coarse filesystem): never, however old.
        let epoch = std::time::UNIX_EPOCH;
        let later = epoch + std::time::Duration::from_secs(1_000_000);
        assert!(!settled_at((1000, 0), (1000, 0), later));
        assert!(settled_at((1000, 0), (1000, 5), later));
    }
}
