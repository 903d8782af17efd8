//! The peer every benchmark is compared with: a Linux guest built from Debian packages only —
//! the `linux-image-cloud-amd64` kernel, `busybox-static` as its whole userland, a tiny static
//! program for the call benchmark (`xtask/peer/syscall_bench.c`: a `getpid()` system call and
//! `clock_gettime(CLOCK_MONOTONIC)` through the vDSO), and `nginx` with its shared libraries —
//! booted by QEMU with the same machine flags as our images. Built once and cached under
//! `target/peer/`.
//!
//! Two initramfs images: `initramfs.cpio` (busybox and the call benchmark) for the boot,
//! footprint and call benchmarks, so Linux does not pay for unpacking a web server it does not
//! run there; and `initramfs-nginx.cpio`, the same plus nginx, for the HTTP benchmarks.

use super::cpio::{self, Entry};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the peer's contents change, so a cached one is rebuilt.
const PEER_VERSION: &str = "5";

/// The line the guest prints once its init runs: "ready".
pub const READY_LINE: &str = "LINUX-PEER READY";

/// What the guest prints before the call benchmark, followed by its current clocksource (which
/// decides whether the vDSO's `clock_gettime` reads the clock in user mode or falls back to a
/// system call).
pub const CLOCKSOURCE_LINE: &str = "LINUX-PEER CLOCKSOURCE";

/// The clocksource the guest named on its [`CLOCKSOURCE_LINE`].
pub fn clocksource(serial: &str) -> Option<String> {
    serial.lines().find_map(|line| {
        let name = line.split(CLOCKSOURCE_LINE).nth(1)?.trim();
        (!name.is_empty()).then(|| name.to_owned())
    })
}

/// What the guest prints after nginx served its page over loopback (`libos.bench=nginx`).
pub const NGINX_SERVED_LINE: &str = "LINUX-PEER NGINX SERVED";

/// What the guest prints once nginx listens on eth0 (`libos.bench=nginx-net`).
pub const NGINX_LISTENING_LINE: &str = "LINUX-PEER NGINX LISTENING";

/// What the guest prints every second in `libos.bench=nginx-net` mode, followed by the `cpu`
/// line of `/proc/stat` (jiffies of USER_HZ = 100 since boot).
pub const STAT_LINE: &str = "LINUX-PEER STAT ";

/// The address the guest's eth0 takes (the http app's, too), on QEMU's user network or the
/// http benchmark's tap.
pub const GUEST_ADDRESS: [u8; 4] = [10, 0, 2, 15];

/// The guest's gateway (its init's default route, and the http app's `gateway`): QEMU's on the
/// user network, the host side of the tap on the http benchmark's.
pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];

/// The file of 16 MiB (zeros) the guest's init writes into nginx's root for the large GET.
pub const LARGE_FILE: &str = "/16m";

/// The kernel modules the virtio-net NIC needs, in the order `insmod` loads them (the cloud
/// kernel builds virtio, virtio_pci and virtio_net as modules): each one's path under
/// `lib/modules/VERSION/kernel/`.
const NIC_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
];

/// The `cpu` line of `/proc/stat` as the guest printed it after [`STAT_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuJiffies {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Every [`STAT_LINE`] in `serial`, in order.
pub fn cpu_jiffies(serial: &str) -> Vec<CpuJiffies> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = line.split(STAT_LINE).nth(1)?;
            let mut words = rest.split_whitespace();
            if words.next()? != "cpu" {
                return None;
            }
            let numbers: Vec<u64> = words.map(|word| word.parse().ok()).collect::<Option<_>>()?;
            // user nice system idle iowait irq softirq [steal guest guest_nice]
            let field = |index: usize| numbers.get(index).copied();
            Some(CpuJiffies {
                busy: field(0)? + field(1)? + field(2)? + field(5)? + field(6)?,
                idle: field(3)? + field(4)?,
            })
        })
        .collect()
}

/// A built peer: its kernel and its initramfs images.
#[derive(Debug, Clone)]
pub struct Peer {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// `initramfs` plus nginx and its libraries.
    pub initramfs_nginx: PathBuf,
    /// The Debian kernel package it came from.
    pub kernel_package: String,
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The concrete kernel package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> anyhow::Result<String> {
    let find = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-cloud-amd64"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| line.trim().strip_prefix("Depends: "))
            .filter(|name| name.starts_with("linux-image-"))
            .map(str::to_owned)
    };
    if let Some(name) = find() {
        return Ok(name);
    }
    // A fresh machine may not have read its package lists yet.
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    find().context(
        "the Debian package linux-image-cloud-amd64 was not found: the Linux peer needs Debian's \
         package lists (run `apt-get update`)",
    )
}

fn download(packages: &[&str], folder: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder)?;
    let attempt = || {
        run(
            Command::new("apt-get")
                .arg("download")
                .args(packages)
                .current_dir(folder),
            &format!("apt-get download {}", packages.join(" ")),
        )
    };
    if attempt().is_err() {
        // Stale package lists name versions the mirror no longer has: refresh once and retry.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        attempt().with_context(|| {
            format!(
                "a Debian package for the Linux peer is missing: {}",
                packages.join(", ")
            )
        })?;
    }
    Ok(())
}

fn extract_all(debs: &Path, into: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(debs)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|ext| ext == "deb") {
            run(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into),
                "dpkg-deb -x",
            )?;
        }
    }
    Ok(())
}

fn compile_syscall_bench(out: &Path) -> anyhow::Result<()> {
    let source = crate::workspace_root().join("xtask/peer/syscall_bench.c");
    run(
        Command::new("gcc")
            .args([
                "-O2",
                "-static",
                "-nostdlib",
                "-fno-stack-protector",
                "-fno-builtin",
                "-fno-pie",
                "-no-pie",
                "-o",
            ])
            .arg(out)
            .arg(&source),
        "gcc (the Linux peer's syscall benchmark)",
    )?;
    Ok(())
}

/// The guest's `/init`: announce readiness, run the benchmark named on the kernel command line
/// (`libos.bench=calls`, after naming the clocksource), power off; or, for
/// `libos.bench=nginx-net`, bring up eth0 (10.0.2.15/24, gateway 10.0.2.2) and serve with nginx
/// until killed, printing the CPU's jiffies every second.
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo LINUX-PEER READY
case \"$(/bin/busybox cat /proc/cmdline)\" in
  *libos.bench=calls*)
    /bin/busybox mount -t sysfs sysfs /sys
    echo \"LINUX-PEER CLOCKSOURCE $(/bin/busybox cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\"
    /bin/syscall-bench ;;
  *libos.bench=nginx-net*)
    /bin/busybox mount -t devtmpfs dev /dev
    for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
        failover net_failover virtio_net; do
      /bin/busybox insmod /lib/modules/$module.ko
    done
    /bin/busybox ip link set lo up
    /bin/busybox ip link set eth0 up
    /bin/busybox ip addr add 10.0.2.15/24 dev eth0
    /bin/busybox ip route add default via 10.0.2.2
    /bin/busybox dd if=/dev/zero of=/www/16m bs=1048576 count=16 2>/dev/null
    /usr/sbin/nginx -c /etc/nginx/nginx.conf && echo LINUX-PEER NGINX LISTENING
    # Once a second, the cpu line of /proc/stat, with shell builtins only (read from a FIFO
    # nobody writes times out after 1 s): no process is started between two lines.
    /bin/busybox mkfifo /tmp/tick
    exec 3<>/tmp/tick
    while :; do
      read -r cpu < /proc/stat
      echo \"LINUX-PEER STAT $cpu\"
      read -t 1 -u 3 nothing
    done ;;
  *libos.bench=nginx*)
    /bin/busybox mount -t devtmpfs dev /dev
    /bin/busybox ip link set lo up
    /usr/sbin/nginx -c /etc/nginx/nginx.conf &&
      /bin/busybox wget -q -O - http://127.0.0.1/ && echo LINUX-PEER NGINX SERVED ;;
esac
/bin/busybox poweroff -f
";

/// One build at a time in a process: concurrent callers share the cache.
static BUILD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the peer (or finds it cached).
pub fn build() -> anyhow::Result<Peer> {
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let folder = crate::target_dir().join("peer");
    let stamp = folder.join("stamp");
    let kernel = folder.join("vmlinuz");
    let initramfs = folder.join("initramfs.cpio");
    let initramfs_nginx = folder.join("initramfs-nginx.cpio");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && let Some(package) = text.strip_prefix(&format!("{PEER_VERSION} "))
        && kernel.is_file()
        && initramfs.is_file()
        && initramfs_nginx.is_file()
    {
        return Ok(Peer {
            kernel,
            initramfs,
            initramfs_nginx,
            kernel_package: package.trim().to_owned(),
        });
    }
    eprintln!(
        "xtask: building the Linux peer from Debian packages under {}",
        folder.display()
    );
    let _ = std::fs::remove_dir_all(&folder);
    let package = kernel_package()?;
    let debs = folder.join("debs");
    let mut packages = vec![
        package.clone(),
        "busybox-static".to_owned(),
        "nginx".to_owned(),
    ];
    packages.extend(library_dependencies("nginx")?);
    let names: Vec<&str> = packages.iter().map(String::as_str).collect();
    download(&names, &debs)?;
    let root = folder.join("extract");
    extract_all(&debs, &root)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("the kernel package holds no /boot/vmlinuz-*")?;
    std::fs::copy(&vmlinuz, &kernel)?;
    let busybox =
        std::fs::read(root.join("bin/busybox")).context("busybox-static holds no /bin/busybox")?;
    let bench_binary = folder.join("syscall-bench");
    compile_syscall_bench(&bench_binary)?;
    let bench = std::fs::read(&bench_binary)?;
    let base = [
        Entry::Directory { path: "bin" },
        Entry::Directory { path: "dev" },
        Entry::Directory { path: "proc" },
        Entry::Directory { path: "sys" },
        Entry::CharDevice {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox",
            data: &busybox,
            executable: true,
        },
        Entry::File {
            path: "bin/syscall-bench",
            data: &bench,
            executable: true,
        },
        Entry::File {
            path: "init",
            data: INIT.as_bytes(),
            executable: true,
        },
    ];
    std::fs::write(&initramfs, cpio::archive(&base))?;
    let nginx = NginxFiles::collect(&root)?;
    let mut with_nginx: Vec<Entry<'_>> = base.into_iter().collect();
    with_nginx.extend(nginx.entries());
    std::fs::write(&initramfs_nginx, cpio::archive(&with_nginx))?;
    std::fs::write(&stamp, format!("{PEER_VERSION} {package}\n"))?;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&debs);
    Ok(Peer {
        kernel,
        initramfs,
        initramfs_nginx,
        kernel_package: package,
    })
}

/// The library packages `package` depends on directly (nginx's are libc6, libcrypt1,
/// libpcre2-8-0, libssl3 and zlib1g; none of those needs more than libc6).
fn library_dependencies(package: &str) -> anyhow::Result<Vec<String>> {
    let out = run(
        Command::new("apt-cache").args(["depends", package]),
        "apt-cache depends",
    )?;
    let mut libraries: Vec<String> = out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .filter(|name| name.starts_with("lib") || name.starts_with("zlib"))
        .map(str::to_owned)
        .collect();
    libraries.sort();
    libraries.dedup();
    if libraries.is_empty() {
        bail!("apt-cache lists no library dependencies for {package}");
    }
    Ok(libraries)
}

/// The page nginx serves: the http app's own 612-byte `apps/http/static/index.html` (the size
/// of nginx's stock welcome page that Unikraft's published wrk runs fetched), so both sides send
/// the same body.
pub fn served_page() -> Vec<u8> {
    include_bytes!("../../../apps/http/static/index.html").to_vec()
}

const NGINX_CONF: &str = "user root;
worker_processes 1;
error_log stderr;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    default_type text/html;
    server {
        listen 80;
        location / { root /www; }
    }
}
";

/// nginx, the shared libraries it needs (found through its ELF `DT_NEEDED` entries in the
/// extracted packages), and the files it expects.
struct NginxFiles {
    binary: Vec<u8>,
    /// (path in the guest, contents)
    libraries: Vec<(String, Vec<u8>)>,
    /// The NIC's kernel modules, as (path in the guest: `lib/modules/NAME.ko`, contents).
    modules: Vec<(String, Vec<u8>)>,
    page: Vec<u8>,
}

impl NginxFiles {
    fn collect(root: &Path) -> anyhow::Result<NginxFiles> {
        let binary_path = root.join("usr/sbin/nginx");
        let binary =
            std::fs::read(&binary_path).context("the nginx package holds no /usr/sbin/nginx")?;
        let folders = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];
        let mut wanted = vec![binary_path];
        let mut libraries: Vec<(String, Vec<u8>)> = Vec::new();
        while let Some(object) = wanted.pop() {
            for name in needed_libraries(&object)? {
                let path = format!("lib/x86_64-linux-gnu/{name}");
                if libraries.iter().any(|(known, _)| *known == path) {
                    continue;
                }
                let found = folders
                    .iter()
                    .map(|folder| root.join(folder).join(&name))
                    .find(|candidate| candidate.exists())
                    .with_context(|| {
                        format!("nginx needs {name}, which no downloaded package holds")
                    })?;
                libraries.push((path, std::fs::read(&found)?));
                wanted.push(found);
            }
        }
        let loader = std::fs::read(root.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
            .context("libc6 holds no ld-linux-x86-64.so.2")?;
        libraries.push(("lib64/ld-linux-x86-64.so.2".to_owned(), loader));
        let versions = root.join("lib/modules");
        let version = std::fs::read_dir(&versions)
            .with_context(|| format!("the kernel package holds no {}", versions.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.join("kernel").is_dir())
            .context("the kernel package holds no lib/modules/VERSION/kernel")?;
        let mut modules = Vec::new();
        for module in NIC_MODULES {
            let path = version.join("kernel").join(module);
            let name = path.file_name().expect("a file name").to_string_lossy();
            let guest = format!("lib/modules/{name}");
            let data = std::fs::read(&path).with_context(|| {
                format!("the kernel package holds no module {}", path.display())
            })?;
            modules.push((guest, data));
        }
        Ok(NginxFiles {
            binary,
            libraries,
            modules,
            page: served_page(),
        })
    }

    fn entries(&self) -> Vec<Entry<'_>> {
        let folders = [
            "etc",
            "etc/nginx",
            "lib",
            "lib/x86_64-linux-gnu",
            "lib/modules",
            "lib64",
            "run",
            "tmp",
            "usr",
            "usr/sbin",
            "var",
            "var/lib",
            "var/lib/nginx",
            "var/log",
            "var/log/nginx",
            "www",
        ];
        let mut entries: Vec<Entry<'_>> = folders
            .into_iter()
            .map(|path| Entry::Directory { path })
            .collect();
        entries.push(Entry::File {
            path: "usr/sbin/nginx",
            data: &self.binary,
            executable: true,
        });
        for (path, data) in &self.libraries {
            entries.push(Entry::File {
                path,
                data,
                executable: true,
            });
        }
        for (path, data) in &self.modules {
            entries.push(Entry::File {
                path,
                data,
                executable: false,
            });
        }
        for (path, data) in [
            ("etc/nginx/nginx.conf", NGINX_CONF.as_bytes()),
            ("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n".as_slice()),
            ("etc/group", b"root:x:0:\n".as_slice()),
            ("www/index.html", &self.page),
        ] {
            entries.push(Entry::File {
                path,
                data,
                executable: false,
            });
        }
        entries
    }
}

/// The `DT_NEEDED` names of an ELF file, read with the toolchain's `llvm-readobj`.
fn needed_libraries(object: &Path) -> anyhow::Result<Vec<String>> {
    let readobj = crate::compile::llvm_tool("llvm-readobj")?;
    let out = run(
        Command::new(readobj).arg("--needed-libs").arg(object),
        "llvm-readobj --needed-libs",
    )?;
    // The names follow a "NeededLibraries [" line, one a line, up to "]".
    Ok(out
        .lines()
        .skip_while(|line| !line.contains("NeededLibraries"))
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with(']'))
        .map(|line| line.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clocksource_line_parses() {
        let serial =
            "LINUX-PEER READY\r\nLINUX-PEER CLOCKSOURCE tsc-early\r\nbench linux_getpid …\n";
        assert_eq!(clocksource(serial).as_deref(), Some("tsc-early"));
        assert_eq!(clocksource("LINUX-PEER CLOCKSOURCE \n"), None);
        assert_eq!(clocksource("LINUX-PEER READY\n"), None);
    }

    #[test]
    fn the_served_page_is_612_bytes() {
        assert_eq!(served_page().len(), 612);
    }

    #[test]
    fn stat_lines_give_busy_and_idle_jiffies() {
        let serial = "LINUX-PEER NGINX LISTENING\r\n\
                      LINUX-PEER STAT cpu  10 1 20 300 4 5 6 0 0 0\r\n\
                      LINUX-PEER STAT cpu0 1 1 1 1 1 1 1\n\
                      LINUX-PEER STAT cpu  12 1 25 400 4 5 7 0 0 0\n\
                      LINUX-PEER STAT cpu  broken\n";
        assert_eq!(
            cpu_jiffies(serial),
            [
                CpuJiffies {
                    busy: 42,
                    idle: 304
                },
                CpuJiffies {
                    busy: 50,
                    idle: 404
                }
            ]
        );
    }
}
