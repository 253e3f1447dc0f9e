//! The host around a fixture run: the lock that keeps runs apart, what a container must never
//! change, and the scan for what a finished run left behind.

use std::collections::BTreeSet;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::runs::{fixture, nobody_dir, ORPHAN_MARK};

/// The e2e lock, held while it lives (see [`serial`]).
pub type Serial = (MutexGuard<'static, ()>, Flock<File>);

/// Host-wide checks must not see another fixture run's containers: one run at a time, across
/// threads (`cargo test`) and processes (`cargo nextest run`).
pub fn serial() -> Serial {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    (
        guard,
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap(),
    )
}

/// What the host looks like, for the things a container must never change.
#[derive(Debug, PartialEq)]
pub struct HostState {
    pub hostname: String,
    pub mounts: BTreeSet<String>,
    /// nstest's cgroups (`nstest-<pid>` directories) anywhere under /sys/fs/cgroup.
    pub cgroups: BTreeSet<PathBuf>,
}

fn nstest_cgroups(dir: &Path, depth: usize, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with("nstest-") {
            found.insert(e.path());
        } else if depth > 0 {
            nstest_cgroups(&e.path(), depth - 1, found);
        }
    }
}

pub fn host_state() -> HostState {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .collect();
    let mut cgroups = BTreeSet::new();
    nstest_cgroups(Path::new("/sys/fs/cgroup"), 4, &mut cgroups);
    HostState {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        mounts,
        cgroups,
    }
}

/// Processes on the host whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The clean-host guard of a fixture run. Made before the run, it records the host's state;
/// dropped after it, it checks that nothing of the run is left on the host
/// ([`HostGuard::assert_clean`]), unless the test is already failing. It borrows the
/// [`serial`] lock, so no other run comes between the record and the check.
#[must_use = "the host is checked when the guard is dropped"]
pub struct HostGuard<'a> {
    before: HostState,
    /// The run's TMPDIR and cache directory; `None`: only the host's state is compared
    /// ([`HostGuard::state_only`]).
    dirs: Option<(PathBuf, PathBuf)>,
    _serial: PhantomData<&'a Serial>,
    /// The lock, when the guard holds it itself ([`HostGuard::for_run`]): released after the
    /// drop's check (fields drop after `Drop::drop`).
    _lock: Option<Serial>,
}

impl HostGuard<'static> {
    /// The e2e lock taken, a fresh TMPDIR `tmp_name` under the target's temp dir and the e2e
    /// cache, and a guard of the host for a run in them that holds the lock until it is done:
    /// `(guard, tmp, cache)`.
    pub fn for_run(tmp_name: &str) -> (Self, PathBuf, PathBuf) {
        let lock = serial();
        let (tmp, cache) = (crate::runs::scratch(tmp_name), crate::runs::e2e_cache());
        let guard = HostGuard {
            before: host_state(),
            dirs: Some((tmp.clone(), cache.clone())),
            _serial: PhantomData,
            _lock: Some(lock),
        };
        (guard, tmp, cache)
    }
}

impl<'a> HostGuard<'a> {
    /// For a run with its TMPDIR at `tmp` and its cache at `cache`: records the host now.
    pub fn new(_serial: &'a Serial, tmp: &Path, cache: &Path) -> Self {
        HostGuard {
            before: host_state(),
            dirs: Some((tmp.to_path_buf(), cache.to_path_buf())),
            _serial: PhantomData,
            _lock: None,
        }
    }

    /// Records the host now, for a check of its state only (hostname, mount table, nstest's
    /// cgroups): no scan for the run's processes, temp files or cache entries.
    pub fn state_only(_serial: &'a Serial) -> Self {
        HostGuard {
            before: host_state(),
            dirs: None,
            _serial: PhantomData,
            _lock: None,
        }
    }

    /// The host as it was when the guard was made.
    pub fn before(&self) -> &HostState {
        &self.before
    }

    /// Checks now, as the drop does: for a test that runs more than once under one guard.
    pub fn assert_clean(&self) {
        match &self.dirs {
            Some((tmp, cache)) => assert_host_clean(&self.before, tmp, cache),
            None => assert_eq!(host_state(), self.before),
        }
    }

    /// Ends the guard here rather than at the end of its scope: checks the host now.
    pub fn finish(self) {}
}

impl Drop for HostGuard<'_> {
    fn drop(&mut self) {
        // A test already failing has said why; a second panic, in a drop, would abort the
        // whole test binary.
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

/// Checks that nothing of a finished run is left on the host: processes, mounts, hostname,
/// temp files, half-built cache entries.
fn assert_host_clean(before: &HostState, tmp: &Path, cache: &Path) {
    wait_until(
        "the containers' processes to be gone",
        Duration::from_secs(5),
        || {
            // This checkout's fixtures only: another checkout's run on the same machine is not ours.
            let examples = fixture().parent().unwrap().display().to_string();
            processes_with(ORPHAN_MARK).is_empty()
                && processes_with(&examples).is_empty()
                && processes_with(&nobody_dir().display().to_string()).is_empty()
        },
    );
    assert_eq!(
        &host_state(),
        before,
        "the host's hostname or mount table changed"
    );
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
    for sub in ["tmp", "mnt"] {
        let Ok(entries) = std::fs::read_dir(cache.join(sub)) else {
            continue; // the run never opened the cache
        };
        let left: Vec<_> = entries.collect();
        assert!(left.is_empty(), "cache/{sub} not empty: {left:?}");
    }
}
