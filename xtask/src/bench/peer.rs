//! The peer every benchmark is compared with: a Linux guest built from Debian packages only —
//! the `linux-image-cloud-amd64` kernel, `busybox-static` as its whole userland, a tiny static
//! program for the call benchmark (`xtask/peer/syscall_bench.c`: a `getpid()` system call and
//! `clock_gettime(CLOCK_MONOTONIC)` through the vDSO), `nginx` and `redis-server` with their
//! shared libraries — booted by QEMU with the same machine flags as our images. Built once and
//! cached under `target/peer/`.
//!
//! Three initramfs images: `initramfs.cpio` (busybox and the call benchmark) for the boot,
//! footprint and call benchmarks, so Linux does not pay for unpacking servers it does not run
//! there; `initramfs-nginx.cpio`, the same plus nginx, for the HTTP benchmarks; and
//! `initramfs-redis.cpio`, the same plus redis-server and the virtio-blk driver, for the
//! key-value benchmark (its AOF on an ext4 file system on a virtio-blk disk, see
//! [`make_redis_disk`]).

use super::cpio::{self, Entry};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the peer's contents change, so a cached one is rebuilt.
const PEER_VERSION: &str = "6";

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

/// What the guest prints once redis-server listens on eth0 (`libos.bench=redis-net` and
/// `libos.bench=redis-net-memory`).
pub const REDIS_LISTENING_LINE: &str = "LINUX-PEER REDIS LISTENING";

/// What the guest prints in `libos.bench=redis-net` mode once the disk is mounted, followed by
/// its line of `/proc/mounts` (the file system and its mount options).
pub const REDIS_DISK_LINE: &str = "LINUX-PEER REDIS DISK";

/// The port redis-server listens on (the kv app's too).
pub const REDIS_PORT: u16 = 6379;

/// The guest's `/proc/mounts` line for redis's disk, as it printed it after [`REDIS_DISK_LINE`].
pub fn redis_disk(serial: &str) -> Option<String> {
    serial.lines().find_map(|line| {
        let mount = line.split(REDIS_DISK_LINE).nth(1)?.trim();
        (!mount.is_empty()).then(|| mount.to_owned())
    })
}

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

/// The module the virtio-blk disk needs beyond [`NIC_MODULES`]' virtio core (the cloud kernel
/// builds virtio_blk as a module; ext4, jbd2, mbcache and crc32c are built in).
const DISK_MODULES: &[&str] = &["drivers/block/virtio_blk.ko"];

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
    /// `initramfs` plus redis-server, its libraries and the virtio-blk driver.
    pub initramfs_redis: PathBuf,
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
/// until killed, printing the CPU's jiffies every second; or, for `libos.bench=redis-net`, bring
/// up eth0 likewise, mount the virtio-blk disk's ext4 at `/data` and serve with redis-server
/// (`appendonly yes`, `appendfsync always`) until killed; `libos.bench=redis-net-memory` the same
/// without the disk (`appendonly no`).
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
  *libos.bench=redis-net-memory*|*libos.bench=redis-net*)
    /bin/busybox mount -t devtmpfs dev /dev
    for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
        failover net_failover virtio_net virtio_blk; do
      /bin/busybox insmod /lib/modules/$module.ko
    done
    /bin/busybox ip link set lo up
    /bin/busybox ip link set eth0 up
    /bin/busybox ip addr add 10.0.2.15/24 dev eth0
    /bin/busybox ip route add default via 10.0.2.2
    # redis-server warns (and a background save could fail) without overcommit.
    echo 1 > /proc/sys/vm/overcommit_memory
    config=/etc/redis/memory.conf
    case \"$(/bin/busybox cat /proc/cmdline)\" in
      *libos.bench=redis-net-memory*) ;;
      *)
        config=/etc/redis/durable.conf
        # The virtio-blk disk, formatted ext4 on the host; mounted with the kernel's defaults
        # (barriers on: an fsync ends in a flush the device must complete).
        tries=0
        while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do
          /bin/busybox sleep 0.1
          tries=$((tries + 1))
        done
        /bin/busybox mount -t ext4 /dev/vda /data &&
          echo \"LINUX-PEER REDIS DISK $(/bin/busybox grep ' /data ' /proc/mounts)\" ;;
    esac
    /usr/bin/redis-server $config &
    # Listening once /proc/net/tcp has 0.0.0.0:6379 (0x18EB) in state LISTEN (0A).
    until /bin/busybox grep -q ':18EB 00000000:0000 0A' /proc/net/tcp; do
      /bin/busybox sleep 0.1
    done
    echo LINUX-PEER REDIS LISTENING
    wait ;;
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
    let initramfs_redis = folder.join("initramfs-redis.cpio");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && let Some(package) = text.strip_prefix(&format!("{PEER_VERSION} "))
        && kernel.is_file()
        && initramfs.is_file()
        && initramfs_nginx.is_file()
        && initramfs_redis.is_file()
    {
        return Ok(Peer {
            kernel,
            initramfs,
            initramfs_nginx,
            initramfs_redis,
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
    // redis-server's package holds only a link to redis-tools' binary (one program, which
    // reads its name from argv[0]).
    let servers = ["nginx", "redis-server", "redis-tools"];
    let mut packages = vec![package.clone(), "busybox-static".to_owned()];
    packages.extend(servers.iter().map(|name| (*name).to_owned()));
    packages.extend(library_dependencies(&servers)?);
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
    let nginx = nginx_files(&root)?;
    let mut with_nginx: Vec<Entry<'_>> = base.to_vec();
    with_nginx.extend(nginx.entries());
    std::fs::write(&initramfs_nginx, cpio::archive(&with_nginx))?;
    let redis = redis_files(&root)?;
    let mut with_redis: Vec<Entry<'_>> = base.to_vec();
    with_redis.extend(redis.entries());
    std::fs::write(&initramfs_redis, cpio::archive(&with_redis))?;
    std::fs::write(&stamp, format!("{PEER_VERSION} {package}\n"))?;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&debs);
    Ok(Peer {
        kernel,
        initramfs,
        initramfs_nginx,
        initramfs_redis,
        kernel_package: package,
    })
}

/// The library packages `packages` depend on, directly or through other library packages
/// (nginx's are libc6, libcrypt1, libpcre2-8-0, libssl3 and zlib1g; redis-tools' add libatomic1,
/// libjemalloc2, liblzf1 and libsystemd0, which brings libcap2, libgcrypt20, liblz4-1, liblzma5,
/// libzstd1 and libgpg-error0). Only packages named `lib*` or `zlib*` are followed: the servers'
/// other dependencies (adduser, init scripts) are not needed to run them.
fn library_dependencies(packages: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut libraries: Vec<String> = Vec::new();
    let mut wanted: Vec<String> = packages.iter().map(|name| (*name).to_owned()).collect();
    while let Some(package) = wanted.pop() {
        let out = run(
            Command::new("apt-cache").args(["depends", &package]),
            "apt-cache depends",
        )?;
        for name in out
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Depends: "))
            .filter(|name| name.starts_with("lib") || name.starts_with("zlib"))
        {
            if !libraries.iter().any(|known| known == name) {
                libraries.push(name.to_owned());
                wanted.push(name.to_owned());
            }
        }
    }
    libraries.sort();
    if libraries.is_empty() {
        bail!(
            "apt-cache lists no library dependencies for {}",
            packages.join(", ")
        );
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

/// redis-server's configuration with durability: every write is in the append-only file and
/// fsynced before it is acknowledged (`appendfsync always`: redis writes and fsyncs the AOF
/// before replying to the clients of each event-loop pass); no RDB snapshots.
const REDIS_DURABLE_CONF: &str = "bind 0.0.0.0
port 6379
protected-mode no
daemonize no
loglevel warning
logfile \"\"
save \"\"
dir /data
appendonly yes
appendfsync always
";

/// redis-server's configuration without durability: in memory only.
const REDIS_MEMORY_CONF: &str = "bind 0.0.0.0
port 6379
protected-mode no
daemonize no
loglevel warning
logfile \"\"
save \"\"
dir /tmp
appendonly no
";

/// A server program from the extracted packages with what it needs in the guest: the shared
/// libraries its ELF names (through `DT_NEEDED`, transitively), the dynamic loader, the kernel
/// modules of its devices, and its own folders and files.
struct ServerFiles {
    /// Folders to make, parents first.
    folders: Vec<&'static str>,
    /// (path in the guest, contents, executable)
    files: Vec<(String, Vec<u8>, bool)>,
}

impl ServerFiles {
    /// `program` (its path in the extracted packages under `root`) as `guest_path`, with its
    /// libraries, the loader and the kernel `modules` (paths under `lib/modules/VERSION/kernel/`,
    /// put in the guest's `lib/modules/NAME.ko`).
    fn collect(
        root: &Path,
        program: &str,
        guest_path: &str,
        modules: &[&str],
    ) -> anyhow::Result<ServerFiles> {
        let binary_path = root.join(program);
        let binary = std::fs::read(&binary_path)
            .with_context(|| format!("no downloaded package holds /{program}"))?;
        let mut files = vec![(guest_path.to_owned(), binary, true)];
        let folders = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];
        let mut wanted = vec![binary_path];
        while let Some(object) = wanted.pop() {
            for name in needed_libraries(&object)? {
                let path = format!("lib/x86_64-linux-gnu/{name}");
                if files.iter().any(|(known, _, _)| *known == path) {
                    continue;
                }
                let found = folders
                    .iter()
                    .map(|folder| root.join(folder).join(&name))
                    .find(|candidate| candidate.exists())
                    .with_context(|| {
                        format!("{program} needs {name}, which no downloaded package holds")
                    })?;
                files.push((path, std::fs::read(&found)?, true));
                wanted.push(found);
            }
        }
        let loader = std::fs::read(root.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
            .context("libc6 holds no ld-linux-x86-64.so.2")?;
        files.push(("lib64/ld-linux-x86-64.so.2".to_owned(), loader, true));
        let versions = root.join("lib/modules");
        let version = std::fs::read_dir(&versions)
            .with_context(|| format!("the kernel package holds no {}", versions.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.join("kernel").is_dir())
            .context("the kernel package holds no lib/modules/VERSION/kernel")?;
        for module in modules {
            let path = version.join("kernel").join(module);
            let name = path.file_name().expect("a file name").to_string_lossy();
            let data = std::fs::read(&path).with_context(|| {
                format!("the kernel package holds no module {}", path.display())
            })?;
            files.push((format!("lib/modules/{name}"), data, false));
        }
        Ok(ServerFiles {
            folders: vec![
                "etc",
                "lib",
                "lib/x86_64-linux-gnu",
                "lib/modules",
                "lib64",
                "run",
                "tmp",
                "usr",
                "var",
            ],
            files,
        })
    }

    /// Adds `folders` (parents first; those already there are skipped).
    fn with_folders(mut self, folders: &[&'static str]) -> ServerFiles {
        for folder in folders {
            if !self.folders.contains(folder) {
                self.folders.push(folder);
            }
        }
        self
    }

    /// Adds a file that is not executable.
    fn with_file(mut self, path: &str, data: &[u8]) -> ServerFiles {
        self.files.push((path.to_owned(), data.to_vec(), false));
        self
    }

    fn entries(&self) -> Vec<Entry<'_>> {
        let mut entries: Vec<Entry<'_>> = self
            .folders
            .iter()
            .map(|path| Entry::Directory { path })
            .collect();
        for (path, data, executable) in &self.files {
            entries.push(Entry::File {
                path,
                data,
                executable: *executable,
            });
        }
        entries
    }
}

/// nginx with its libraries, the NIC's modules, its configuration and the served page.
fn nginx_files(root: &Path) -> anyhow::Result<ServerFiles> {
    Ok(
        ServerFiles::collect(root, "usr/sbin/nginx", "usr/sbin/nginx", NIC_MODULES)?
            .with_folders(&[
                "etc/nginx",
                "usr/sbin",
                "var/lib",
                "var/lib/nginx",
                "var/log",
                "var/log/nginx",
                "www",
            ])
            .with_file("etc/nginx/nginx.conf", NGINX_CONF.as_bytes())
            .with_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
            .with_file("etc/group", b"root:x:0:\n")
            .with_file("www/index.html", &served_page()),
    )
}

/// redis-server (redis-tools' `redis-check-rdb`, which serves when its name is redis-server)
/// with its libraries, the NIC's and the disk's modules, its two configurations and the disk's
/// mount point `/data`.
fn redis_files(root: &Path) -> anyhow::Result<ServerFiles> {
    let modules: Vec<&str> = NIC_MODULES.iter().chain(DISK_MODULES).copied().collect();
    Ok(ServerFiles::collect(
        root,
        "usr/bin/redis-check-rdb",
        "usr/bin/redis-server",
        &modules,
    )?
    .with_folders(&["etc/redis", "usr/bin", "data"])
    .with_file("etc/redis/durable.conf", REDIS_DURABLE_CONF.as_bytes())
    .with_file("etc/redis/memory.conf", REDIS_MEMORY_CONF.as_bytes())
    .with_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    .with_file("etc/group", b"root:x:0:\n"))
}

/// Writes a fresh raw disk image of `bytes` at `path` with an ext4 file system on the whole
/// disk (the host's `mkfs.ext4`, from e2fsprogs), every inode table and the journal written at
/// once, so the guest's kernel starts no lazy initialisation in the background while it is
/// measured.
pub fn make_redis_disk(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::File::create(path)?.set_len(bytes)?;
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "redis"])
            .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(path),
        "mkfs.ext4 (e2fsprogs) for redis-server's disk",
    )?;
    Ok(())
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
