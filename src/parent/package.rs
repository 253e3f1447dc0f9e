//! What `cargo test` gives a test of the package, inside its container: the package directory
//! and the build outputs (the test binary, the `CARGO_BIN_EXE_*` binaries) at their own paths,
//! read-only, the package root as the working directory, a private writable
//! `CARGO_TARGET_TMPDIR`, and what the package's binaries need to start over a rootfs of another
//! C library: the host's dynamic loader and its library directory, where the rootfs has none
//! (a glibc-linked binary over a busybox or Alpine root).

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// The host paths a container shows of the test's package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PackageView {
    /// `(host path, path inside)`: bound read-only, everything under them included.
    pub trees: Vec<(PathBuf, PathBuf)>,
    /// `(host path, path inside)`: the dynamic loader of this binary and the directory of its
    /// C library, bound read-only where the rootfs has nothing at that path.
    pub loader: Vec<(PathBuf, PathBuf)>,
    /// `CARGO_TARGET_TMPDIR`, if cargo set one: a fresh tmpfs there (writable, the test's own).
    pub target_tmpdir: Option<PathBuf>,
    /// The working directory, as cargo gives it: the package root.
    pub workdir: PathBuf,
}

/// The view of the package at `manifest_dir` for a test of this binary, worked out once per
/// package and process. `None` where the package directory cannot be reached (a binary run
/// away from its source tree, or a rootless user who may not enter it).
pub(crate) fn view(manifest_dir: &str, target_tmpdir: Option<&str>) -> Option<PackageView> {
    type Seen = Vec<((String, Option<String>), Option<PackageView>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let key = (manifest_dir.to_string(), target_tmpdir.map(str::to_string));
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = seen.iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let exe = std::fs::canonicalize("/proc/self/exe").ok();
    let v = work_out(Path::new(manifest_dir), exe.as_deref(), target_tmpdir);
    seen.push((key, v.clone()));
    v
}

/// [`view`], for a package at `manifest_dir` and the test binary `exe`.
fn work_out(manifest_dir: &Path, exe: Option<&Path>, tmpdir: Option<&str>) -> Option<PackageView> {
    let package = std::fs::canonicalize(manifest_dir).ok()?;
    if !showable(&package) {
        return None;
    }
    let mut trees = Vec::new();
    // The build outputs: `<target>/<profile>/deps/<test>` (or `examples/`), with the
    // `CARGO_BIN_EXE_*` binaries in `<target>/<profile>`; else the binary alone.
    let outputs = exe.map(|exe| match exe.parent() {
        Some(dir) if dir.ends_with("deps") || dir.ends_with("examples") => {
            dir.parent().unwrap_or(dir).to_path_buf()
        }
        _ => exe.to_path_buf(),
    });
    match outputs {
        Some(out) if out.starts_with(&package) => trees.push(package.clone()),
        Some(out) => {
            // One bind for both when they share a workspace root (a `Cargo.toml` above both).
            let common = common_ancestor(&package, &out);
            if common.join("Cargo.toml").is_file() && showable(&common) {
                trees.push(common);
            } else {
                trees.push(package.clone());
                if showable(&out) {
                    trees.push(out);
                }
            }
        }
        None => trees.push(package.clone()),
    }
    let mut trees: Vec<(PathBuf, PathBuf)> = trees.into_iter().map(|t| (t.clone(), t)).collect();
    // `env!("CARGO_MANIFEST_DIR")` as cargo wrote it, where that path goes through a symlink.
    if manifest_dir != package && manifest_dir.is_absolute() && showable(manifest_dir) {
        trees.push((package.clone(), manifest_dir.to_path_buf()));
    }
    // Canonical, and inside what is shown: the tmpfs goes on a real directory of the bind.
    let target_tmpdir = tmpdir
        .and_then(|t| std::fs::canonicalize(t).ok())
        .filter(|t| t.is_dir() && trees.iter().any(|(h, _)| t.starts_with(h)));
    Some(PackageView {
        trees,
        loader: exe.and_then(loader).unwrap_or_default(),
        target_tmpdir,
        workdir: package,
    })
}

/// The ELF interpreter of `exe` (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`) at its own
/// path, and the directory it really lives in (with the C library beside it, where the
/// loader looks by default), at its canonical path. `None` for a static binary.
fn loader(exe: &Path) -> Option<Vec<(PathBuf, PathBuf)>> {
    let interp = PathBuf::from(elf_interpreter(exe)?);
    let real = std::fs::canonicalize(&interp).ok()?;
    let dir = real.parent()?.to_path_buf();
    (interp.is_absolute() && showable(&dir)).then(|| vec![(dir.clone(), dir), (real, interp)])
}

/// The `PT_INTERP` string of a 64-bit little-endian ELF file (x86_64, aarch64), if it has one.
fn elf_interpreter(exe: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(exe).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    // ELF magic, 64-bit, little-endian.
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(&head, 32), u16_at(&head, 54), u16_at(&head, 56));
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    let mut table = vec![0u8; phentsize as usize * phnum as usize];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    const PT_INTERP: u32 = 3;
    let ph = table
        .chunks(phentsize as usize)
        .find(|ph| u32::from_le_bytes(ph[..4].try_into().unwrap()) == PT_INTERP)?;
    let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32));
    if size == 0 || size > 4096 {
        return None;
    }
    let mut name = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(offset)).ok()?;
    f.read_exact(&mut name).ok()?;
    let name = name.split(|b| *b == 0).next()?;
    String::from_utf8(name.to_vec()).ok()
}

/// Whether a host path may be shown at its own path inside: not `/` (it would hide the rootfs)
/// and not under what the container mounts itself.
fn showable(p: &Path) -> bool {
    let first = p.components().nth(1);
    p.parent().is_some()
        && !matches!(first, Some(Component::Normal(c)) if ["proc", "sys", "dev"].iter().any(|d| c == *d))
}

fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{work_out, PackageView};
    use std::path::{Path, PathBuf};

    fn paths(v: &PackageView) -> Vec<&Path> {
        v.trees.iter().map(|(h, _)| h.as_path()).collect()
    }

    #[test]
    fn the_package_and_its_build_outputs_are_shown_with_one_bind_where_they_share_a_root() {
        let ws = tempfile::tempdir().unwrap();
        let ws = ws.path().canonicalize().unwrap();
        let pkg = ws.join("crates/foo");
        let deps = ws.join("target/debug/deps");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(ws.join("Cargo.toml"), "[workspace]\n").unwrap();
        let exe = deps.join("t-0123");
        // A workspace: its root holds both.
        let v = work_out(&pkg, Some(&exe), None).unwrap();
        assert_eq!(paths(&v), [ws.as_path()]);
        assert_eq!(v.workdir, pkg);
        // A package with its own target/: the package alone.
        let v = work_out(&ws, Some(&exe), None).unwrap();
        assert_eq!(paths(&v), [ws.as_path()]);
        // CARGO_TARGET_DIR elsewhere: both, apart.
        let other = tempfile::tempdir().unwrap();
        let other = other.path().canonicalize().unwrap();
        let exe = other.join("debug/examples/e");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let v = work_out(&pkg, Some(&exe), None).unwrap();
        assert_eq!(paths(&v), [pkg.as_path(), other.join("debug").as_path()]);
        // A binary away from any target dir: that file alone.
        let v = work_out(&pkg, Some(Path::new("/usr/bin/true")), None).unwrap();
        assert_eq!(paths(&v), [pkg.as_path(), Path::new("/usr/bin/true")]);
        // CARGO_TARGET_TMPDIR, where it exists inside what is shown.
        std::fs::create_dir_all(ws.join("target/tmp")).unwrap();
        let tmp = ws.join("target/tmp");
        let exe = deps.join("t-0123");
        let v = work_out(&pkg, Some(&exe), tmp.to_str()).unwrap();
        assert_eq!(v.target_tmpdir, Some(tmp.clone()));
        let v = work_out(&pkg, Some(&exe), Some("/nonexistent/tmp")).unwrap();
        assert_eq!(v.target_tmpdir, None);
        let v = work_out(&pkg, None, tmp.to_str()).unwrap();
        assert_eq!(v.target_tmpdir, None, "not under the package alone");
    }

    #[test]
    fn the_loader_of_a_dynamic_binary_is_found_and_a_static_one_has_none() {
        let this = std::fs::canonicalize("/proc/self/exe").unwrap();
        let loader = super::loader(&this).expect("this test binary is dynamically linked");
        let (dir, (real, interp)) = (&loader[0].0, (&loader[1].0, &loader[1].1));
        assert!(interp.to_str().unwrap().contains("ld-"), "{interp:?}");
        assert!(real.starts_with(dir) && real.is_file(), "{loader:?}");
        assert_eq!(&std::fs::canonicalize(interp).unwrap(), real);
        // The static busybox the default rootfs is built from, where there is one.
        if let Ok(bb) = std::fs::canonicalize("/bin/busybox") {
            let file = std::process::Command::new("file").arg(&bb).output();
            if file.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("statically")) {
                assert_eq!(super::loader(&bb), None);
            }
        }
        assert_eq!(super::elf_interpreter(Path::new("/etc/hostname")), None);
    }

    #[test]
    fn a_package_path_through_a_symlink_is_shown_at_both_paths_and_slash_never() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().canonicalize().unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().canonicalize().unwrap().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let v = work_out(&link, None, None).unwrap();
        assert_eq!(
            v.trees,
            [(real.clone(), real.clone()), (real.clone(), link)]
        );
        assert_eq!(work_out(Path::new("/"), None, None), None);
        assert_eq!(work_out(Path::new("/proc/self"), None, None), None);
        assert_eq!(work_out(Path::new("/nonexistent/pkg"), None, None), None);
        let _: PathBuf = real;
    }
}
