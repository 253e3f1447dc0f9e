//! Limits on a kernel with only cgroup v2: a VM boots Debian's kernel and runs the fixture;
//! and link faults (`tests/network.rs`) on a kernel with netem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::host::{serial, HostGuard};
use crate::outcomes::check_every_outcome_slowly;
use crate::runs::{fixture, scratch, Run};

/// `/init` of the VM: from the initramfs onto a tmpfs (`pivot_root` refuses the initial
/// rootfs), then a machine with nothing but cgroup v2 — every controller on the unified
/// hierarchy, as on current distributions — where the fixture runs as root.
const VM_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /dev /sys /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
if [ "$1" != stage2 ]; then
  /bin/busybox mount -t tmpfs -o size=90% root /newroot
  for d in bin lib lib64 usr etc init; do /bin/busybox cp -a /$d /newroot/; done
  /bin/busybox umount /proc /dev
  exec /bin/busybox switch_root /newroot /init stage2
fi
/bin/busybox --install -s /bin
mount -t sysfs sys /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# As systemd lays it out: the controllers enabled down to user.slice, and the shell that runs
# the tests in a session scope with other processes (so nstest's cgroups go elsewhere).
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup/user.slice/session-1.scope
echo "+memory +pids +cpu" > /sys/fs/cgroup/user.slice/cgroup.subtree_control
echo $$ > /sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs
sleep 1000 &
mount -t tmpfs tmp /tmp
for m in /lib/modules/*.ko; do insmod "$m"; done
ip link set dummy0 up
hostname vm
# Runs the fixture; one still running after 150 s is stuck: say so, with the state, wait channel
# and kernel stack of every user thread, and end it (the test then fails with that dump).
watched() {
  "$@" 2>&1 &
  fx=$!
  ( sleep 150
    kill -0 $fx 2>/dev/null || exit 0
    echo "VM: stuck"
    for p in /proc/[0-9]*; do
      case $(cut -d' ' -f4 $p/stat) in 0|2) continue;; esac
      for t in $p/task/*; do
        echo "VM: dump ${t#/proc/} $(cat $t/comm) $(cut -d' ' -f3 $t/stat) $(cat $t/wchan)"
        sed 's/^/VM: dump    /' $t/stack
      done
    done
    kill -9 $fx ) &
  wd=$!
  wait $fx
  r=$?
  kill $wd 2>/dev/null
  return $r
}
echo "VM: cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "VM: v1 hierarchies: $(grep -c ' cgroup ' /proc/mounts)"
echo "VM: start"
cd /tmp && watched env NSTEST_CACHE_DIR=/tmp/cache /bin/e2e-fixture --test-threads 2 --color never
echo "VM: exit: $?"
echo "VM: cgroups left: $(find /sys/fs/cgroup -name 'nstest-*' | wc -l)"
# Rootless, with the cgroup subtree delegated as systemd delegates user@<uid>.service: the
# user owns it, its shell runs in a scope below with other processes.
u=/sys/fs/cgroup/user.slice/user-65534.slice
d=$u/user@65534.service
mkdir -p $d/app.slice/run.scope
echo "+memory +pids +cpu" > $u/cgroup.subtree_control
chown -R 65534:65534 $d
echo "+memory +pids +cpu" > $d/cgroup.subtree_control
echo "+memory +pids" > $d/app.slice/cgroup.subtree_control
echo $$ > $d/app.slice/run.scope/cgroup.procs
echo "VM: start rootless"
watched env NSTEST_CACHE_DIR=/tmp/cache-nobody /bin/ul-setpriv --reuid=65534 --regid=65534 \
  --clear-groups /bin/e2e-fixture --test-threads 2 --color never
echo "VM: exit rootless: $?"
echo "VM: cgroups left rootless: $(find /sys/fs/cgroup -name 'nstest-*' | wc -l)"
# Link faults on a kernel with netem (tests/network.rs measures them where netem is there).
# As under cargo, with its package (an empty directory at the path the binary was built for):
# the package's view gives the nested containers the host's loader (the test binary,
# glibc-linked, re-executes itself over the busybox root for each host).
mkdir -p @MANIFEST_DIR@
echo "VM: start network"
watched env NSTEST_CACHE_DIR=/tmp/cache /bin/network link_faults --nocapture --color never
echo "VM: exit network: $?"
poweroff -f
"#;

/// The newest kernel under /boot, and its version.
fn vm_kernel() -> (PathBuf, String) {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("vmlinuz-"))
        .collect();
    kernels.sort();
    let kernel = kernels.pop().expect(
        "this test boots a kernel with cgroup v2 only: \
         apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64",
    );
    let version = kernel
        .to_string_lossy()
        .rsplit_once("vmlinuz-")
        .unwrap()
        .1
        .to_string();
    (kernel, version)
}

#[test]
fn limits_on_a_kernel_with_only_cgroup_v2_in_a_vm() {
    // This machine binds every controller to cgroup v1. The same fixture, as root, on a kernel
    // whose controllers are all on the unified hierarchy: a VM (qemu, TCG) booting Debian's
    // kernel with an initramfs of busybox, the fixture and its libraries.
    let (kernel, version) = vm_kernel();
    let lock = serial();
    let dir = scratch("vm");
    let root = dir.join("root");
    for d in [
        "bin",
        "lib/modules",
        "proc",
        "dev",
        "newroot",
        "etc",
        "usr/bin",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = nstest::rootfs::busybox::find().expect("apt-get install busybox-static");
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    // The fixture, and util-linux's setpriv to run it as uid 65534 (busybox's cannot), with
    // their libraries.
    for (exe, to) in [
        (fixture(), "bin/e2e-fixture"),
        (crate::network::network_tests(), "bin/network"),
        (PathBuf::from("/usr/bin/setpriv"), "bin/ul-setpriv"),
    ] {
        std::fs::copy(&exe, root.join(to)).unwrap();
        let ldd = Command::new("ldd").arg(&exe).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            // At its real path, and a symlink where ldd names another (the loader:
            // /lib64/ld-linux-x86-64.so.2 is in the C library's directory, where nstest
            // finds that library to show it to a nested container).
            let real = std::fs::canonicalize(lib).unwrap();
            let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap());
            std::fs::create_dir_all(inside(&real).parent().unwrap()).unwrap();
            let _ = std::fs::copy(&real, inside(&real)); // twice for both binaries: fine
            if real != Path::new(lib) && !inside(Path::new(lib)).exists() {
                std::fs::create_dir_all(inside(Path::new(lib)).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(&real, inside(Path::new(lib))).unwrap();
            }
        }
    }
    // The demos bind /etc/os-release and /usr/bin, and share the host's network (a dummy NIC).
    std::fs::copy("/etc/os-release", root.join("etc/os-release")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", root.join("usr/bin/sh")).unwrap();
    let modules = Path::new("/lib/modules").join(&version).join("kernel");
    // Loaded in this order (a module after those it depends on): the file names say it.
    for (i, m) in [
        "fs/overlayfs/overlay.ko",
        "drivers/net/dummy.ko",
        "net/llc/llc.ko",
        "net/802/stp.ko",
        "net/bridge/bridge.ko",
        "drivers/net/veth.ko",
        "net/sched/sch_netem.ko",
        "net/sched/sch_tbf.ko",
    ]
    .iter()
    .enumerate()
    {
        let from = modules.join(m);
        assert!(from.exists(), "{} (linux-image-amd64)", from.display());
        let name = format!("{i:02}-{}", from.file_name().unwrap().to_string_lossy());
        std::fs::copy(&from, root.join("lib/modules").join(name)).unwrap();
    }
    std::fs::write(
        root.join("init"),
        VM_INIT.replace("@MANIFEST_DIR@", env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let initrd = dir.join("initrd.cpio");
    let packed = Command::new("sh")
        .arg("-c")
        .arg("cd \"$0\" && find . | cpio -o -H newc --quiet > \"$1\"")
        .arg(&root)
        .arg(&initrd)
        .status()
        .unwrap();
    assert!(packed.success(), "cpio");
    let host = HostGuard::state_only(&lock);
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic"])
        .args(["-no-reboot", "-nic", "none", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64: apt-get install -y --no-install-recommends qemu-system-x86");
    let pid = qemu.id() as i32;
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(420));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = qemu.wait_with_output().unwrap();
    drop(watchdog);
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let tell = || format!("{console}{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("console.log"), tell()).unwrap(); // kept if the test fails
    assert!(
        !console.contains("VM: stuck"),
        "a fixture run in the VM did not end within 150 s; its threads' states and kernel \
         stacks are the `VM: dump` lines:\n{}",
        tell()
    );
    let field = |name: &str| {
        console
            .lines()
            .find_map(|l| {
                l.split_once(&format!("VM: {name}: "))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or_else(|| panic!("no `VM: {name}` line:\n{}", tell()))
            .to_string()
    };
    let controllers = field("cgroup2 controllers");
    for c in ["memory", "pids", "cpu"] {
        assert!(
            controllers.split_whitespace().any(|x| x == c),
            "{controllers}"
        );
    }
    assert_eq!(field("v1 hierarchies"), "0", "{}", tell());
    let run_between = |start: &str, exit: &str| {
        let code: i32 = field(exit).parse().unwrap();
        let out: String = console
            .lines()
            .skip_while(|l| *l != start)
            .skip(1)
            .take_while(|l| !l.starts_with("VM: exit"))
            .map(|l| format!("{l}\n"))
            .collect();
        Run::parse(Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
            stdout: out.into_bytes(),
            stderr: Vec::new(),
        })
    };
    // Every outcome for the same reason as on this machine, the limits through cgroup v2 ...
    check_every_outcome_slowly(&run_between("VM: start", "exit"), false);
    // ... and no cgroup of the run left in the VM.
    assert_eq!(field("cgroups left"), "0", "{}", tell());
    // Rootless with a delegated subtree: the limits apply as for root (in the user's subtree).
    let rootless = run_between("VM: start rootless", "exit rootless");
    assert!(
        rootless.text().contains("user (rootless"),
        "{}",
        rootless.text()
    );
    check_every_outcome_slowly(&rootless, false);
    assert_eq!(field("cgroups left rootless"), "0", "{}", tell());
    // Before Linux 6.6 tmpfs has no user.* xattrs: rootless overlay would fail deletions with
    // EIO; each container gets a private copy instead, and the run says so.
    let mut v = version
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 6) {
        assert!(
            rootless
                .text()
                .contains("needs user.* xattrs on its upper layer"),
            "{}",
            rootless.text()
        );
    }
    // Delay and loss measured through netem, the rate through tbf.
    let network = run_between("VM: start network", "exit network");
    assert_eq!(field("exit network"), "0", "{}", network.text());
    assert!(
        network.text().contains("link faults: netem delay"),
        "{}",
        network.text()
    );
    host.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}
