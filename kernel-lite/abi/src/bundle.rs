//! The boot bundle: what the xtask writes into the bootloader's ramdisk and kernel-lite reads.
//!
//! ```text
//! header   magic "LITEBNDL" | version u32 | app_count u32 | elf_offset u64 | elf_len u64
//! records  app_count × { name [24] | program [24] | heap_bytes u64 | stack_bytes u64 |
//!                        log_level u8 | restart u8 | restart_limit u16 | has_net u8 |
//!                        has_disk u8 | reserved [2] | net [64] (a `net::config::NetConfig`, zero
//!                        if none) | disk [16] (a `blk::DiskBinding`, zero if none) }
//! elf      the user image (libos + the apps' programs), an ELF64 EXEC file
//! ```
//! All numbers are little-endian. kernel-lite trusts nothing here: [`Bundle::parse`] checks every
//! field and says what is wrong with a [`BundleError`].

use crate::blk::{DISK_BINDING_BYTES, DiskBinding, DiskBindingError};
use crate::decode_name;
#[cfg(any(test, feature = "std"))]
use crate::encode_name;
use crate::layout::{MAX_APPS, NAME_LEN};
use crate::net::config::{NET_CONFIG_BYTES, NetConfig, NetConfigError};

pub const BUNDLE_MAGIC: [u8; 8] = *b"LITEBNDL";
pub const BUNDLE_VERSION: u32 = 3;
const HEADER_LEN: usize = 32;
const RECORD_LEN: usize = 72 + NET_CONFIG_BYTES + DISK_BINDING_BYTES;
const DISK_AT: usize = 72 + NET_CONFIG_BYTES;

/// The smallest heap an app may ask for: room for its context block and a little more.
pub const MIN_HEAP_BYTES: u64 = 64 * 1024;
/// The largest heap an app may ask for.
pub const MAX_HEAP_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// The largest stack an app may ask for.
pub const MAX_STACK_BYTES: u64 = 256 * 1024 * 1024;

/// What happens when an app ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// The app runs once.
    Never,
    /// The app is restarted after a failure, at most `limit` times.
    OnFailure { limit: u16 },
    /// The app is restarted whenever it ends, at most `limit` times.
    Always { limit: u16 },
}

/// First restart delay; each further restart doubles it, up to [`MAX_RESTART_BACKOFF_MS`].
pub const FIRST_RESTART_BACKOFF_MS: u64 = 50;
pub const MAX_RESTART_BACKOFF_MS: u64 = 2_000;

impl RestartPolicy {
    /// Whether an app that ended (`failed` or not) after `restarts` restarts so far comes back,
    /// and after how many milliseconds: the back-off doubles with each restart.
    pub fn next_restart(self, failed: bool, restarts: u16) -> Option<u64> {
        let (wanted, limit) = match self {
            RestartPolicy::Never => (false, 0),
            RestartPolicy::OnFailure { limit } => (failed, limit),
            RestartPolicy::Always { limit } => (true, limit),
        };
        if !wanted || restarts >= limit {
            return None;
        }
        let doubling = 1u64 << restarts.min(16);
        Some((FIRST_RESTART_BACKOFF_MS * doubling).min(MAX_RESTART_BACKOFF_MS))
    }

    /// The most restarts this policy allows.
    pub fn limit(self) -> u16 {
        match self {
            RestartPolicy::Never => 0,
            RestartPolicy::OnFailure { limit } | RestartPolicy::Always { limit } => limit,
        }
    }
}

/// One app of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSpec<'a> {
    /// Unique within the bundle; prefixes its console output and names it in fault reports.
    pub name: &'a str,
    /// The program (an entry of the image's app table) this app runs.
    pub program: &'a str,
    /// Heap quota in bytes.
    pub heap_bytes: u64,
    /// Ring-3 stack size in bytes.
    pub stack_bytes: u64,
    /// Maximum `log` level (0 off … 5 trace).
    pub log_level: u8,
    pub restart: RestartPolicy,
    /// The app's network binding, if it has one.
    pub net: Option<NetConfig>,
    /// The app's extent of the disk and its request ring, if it has one.
    pub disk: Option<DiskBinding>,
}

/// Why a bundle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    /// Shorter than its header or its app records.
    Truncated,
    /// Does not start with [`BUNDLE_MAGIC`].
    BadMagic,
    /// Written for another version of this format.
    UnsupportedVersion(u32),
    /// No apps, or more than [`MAX_APPS`].
    BadAppCount(u32),
    /// App record `index` has an empty, overlong or non-UTF-8 name or program.
    BadName { index: usize },
    /// Two apps share the name of app record `index`.
    DuplicateName { index: usize },
    /// App record `index` asks for a heap outside [`MIN_HEAP_BYTES`]..=[`MAX_HEAP_BYTES`].
    BadHeapSize { index: usize },
    /// App record `index` asks for no stack or more than [`MAX_STACK_BYTES`].
    BadStackSize { index: usize },
    /// App record `index` has a log level above 5.
    BadLogLevel { index: usize },
    /// App record `index` has an unknown restart policy.
    BadRestartPolicy { index: usize },
    /// The ELF image's offset and length do not lie inside the bundle.
    BadImageRange,
    /// App record `index` has a network binding that does not check out.
    BadNet { index: usize, error: NetConfigError },
    /// App record `index` has the MAC, IPv4 or IPv6 address of an earlier app.
    DuplicateAddress { index: usize },
    /// App record `index` has a disk binding that does not check out.
    BadDisk {
        index: usize,
        error: DiskBindingError,
    },
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::Truncated => write!(f, "bundle is truncated"),
            BundleError::BadMagic => write!(f, "not a boot bundle (bad magic)"),
            BundleError::UnsupportedVersion(v) => write!(f, "unsupported bundle version {v}"),
            BundleError::BadAppCount(n) => write!(f, "bundle has {n} apps (1..={MAX_APPS})"),
            BundleError::BadName { index } => write!(f, "app {index}: bad name or program"),
            BundleError::DuplicateName { index } => write!(f, "app {index}: duplicate name"),
            BundleError::BadHeapSize { index } => write!(f, "app {index}: heap size out of range"),
            BundleError::BadStackSize { index } => {
                write!(f, "app {index}: stack size out of range")
            }
            BundleError::BadLogLevel { index } => write!(f, "app {index}: log level above 5"),
            BundleError::BadRestartPolicy { index } => {
                write!(f, "app {index}: unknown restart policy")
            }
            BundleError::BadImageRange => write!(f, "user image lies outside the bundle"),
            BundleError::BadNet { index, error } => write!(f, "app {index}: network: {error}"),
            BundleError::BadDisk { index, error } => write!(f, "app {index}: disk: {error}"),
            BundleError::DuplicateAddress { index } => {
                write!(
                    f,
                    "app {index}: MAC or IP address already bound to another app"
                )
            }
        }
    }
}

/// A bundle whose every field has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    app_count: usize,
    elf: &'a [u8],
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

impl<'a> Bundle<'a> {
    /// Checks `bytes` as a boot bundle.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() < HEADER_LEN {
            return Err(BundleError::Truncated);
        }
        if bytes[..8] != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let count = u32_at(bytes, 12);
        if count == 0 || count as usize > MAX_APPS {
            return Err(BundleError::BadAppCount(count));
        }
        let app_count = count as usize;
        if bytes.len() < HEADER_LEN + app_count * RECORD_LEN {
            return Err(BundleError::Truncated);
        }
        let elf_offset = u64_at(bytes, 16);
        let elf_len = u64_at(bytes, 24);
        let elf_end = elf_offset
            .checked_add(elf_len)
            .ok_or(BundleError::BadImageRange)?;
        if elf_offset < (HEADER_LEN + app_count * RECORD_LEN) as u64 || elf_end > bytes.len() as u64
        {
            return Err(BundleError::BadImageRange);
        }
        let bundle = Bundle {
            bytes,
            app_count,
            elf: &bytes[elf_offset as usize..elf_end as usize],
        };
        for index in 0..app_count {
            let app = bundle.decode_record(index)?;
            for earlier in 0..index {
                let earlier = bundle.decode_record(earlier)?;
                if earlier.name == app.name {
                    return Err(BundleError::DuplicateName { index });
                }
                if let (Some(a), Some(b)) = (app.net, earlier.net)
                    && shares_an_address(&a, &b)
                {
                    return Err(BundleError::DuplicateAddress { index });
                }
            }
        }
        Ok(bundle)
    }

    fn decode_record(&self, index: usize) -> Result<AppSpec<'a>, BundleError> {
        let record = &self.bytes[HEADER_LEN + index * RECORD_LEN..][..RECORD_LEN];
        let name = decode_name(&record[..NAME_LEN]).ok_or(BundleError::BadName { index })?;
        let program =
            decode_name(&record[NAME_LEN..2 * NAME_LEN]).ok_or(BundleError::BadName { index })?;
        let heap_bytes = u64_at(record, 48);
        if !(MIN_HEAP_BYTES..=MAX_HEAP_BYTES).contains(&heap_bytes) {
            return Err(BundleError::BadHeapSize { index });
        }
        let stack_bytes = u64_at(record, 56);
        if stack_bytes == 0 || stack_bytes > MAX_STACK_BYTES {
            return Err(BundleError::BadStackSize { index });
        }
        let log_level = record[64];
        if log_level > 5 {
            return Err(BundleError::BadLogLevel { index });
        }
        let limit = u16_at(record, 66);
        let restart = match record[65] {
            0 => RestartPolicy::Never,
            1 => RestartPolicy::OnFailure { limit },
            2 => RestartPolicy::Always { limit },
            _ => return Err(BundleError::BadRestartPolicy { index }),
        };
        let net = match record[68] {
            0 => None,
            1 => {
                let mut bytes = [0u8; NET_CONFIG_BYTES];
                bytes.copy_from_slice(&record[72..72 + NET_CONFIG_BYTES]);
                Some(
                    NetConfig::decode(&bytes)
                        .map_err(|error| BundleError::BadNet { index, error })?,
                )
            }
            _ => {
                return Err(BundleError::BadNet {
                    index,
                    error: NetConfigError::BadMode,
                });
            }
        };
        let disk = match record[69] {
            0 => None,
            1 => {
                let mut bytes = [0u8; DISK_BINDING_BYTES];
                bytes.copy_from_slice(&record[DISK_AT..DISK_AT + DISK_BINDING_BYTES]);
                Some(
                    DiskBinding::decode(&bytes)
                        .map_err(|error| BundleError::BadDisk { index, error })?,
                )
            }
            other => {
                return Err(BundleError::BadDisk {
                    index,
                    error: DiskBindingError::BadFlag(other),
                });
            }
        };
        Ok(AppSpec {
            name,
            program,
            heap_bytes,
            stack_bytes,
            log_level,
            restart,
            net,
            disk,
        })
    }

    /// How many apps the bundle has (at least one).
    pub fn app_count(&self) -> usize {
        self.app_count
    }

    /// App `index`, in bundle order. Panics if `index >= app_count()`.
    pub fn app(&self, index: usize) -> AppSpec<'a> {
        assert!(index < self.app_count, "app index out of range");
        // Every record was checked by `parse`.
        self.decode_record(index)
            .unwrap_or_else(|_| unreachable!("records are checked by Bundle::parse"))
    }

    /// The apps in bundle order.
    pub fn apps(&self) -> impl Iterator<Item = AppSpec<'a>> + '_ {
        (0..self.app_count).map(|index| self.app(index))
    }

    /// The user image (an ELF file), not yet checked: see [`crate::elf::UserImage::parse`].
    pub fn elf(&self) -> &'a [u8] {
        self.elf
    }
}

/// Whether two bindings claim the same MAC, static IPv4 or static IPv6 address.
pub fn shares_an_address(a: &NetConfig, b: &NetConfig) -> bool {
    a.mac == b.mac
        || a.static_ipv4().is_some() && a.static_ipv4() == b.static_ipv4()
        || a.static_ipv6().is_some() && a.static_ipv6() == b.static_ipv6()
}

/// Writes a bundle. The result always passes [`Bundle::parse`], or an error says why not.
#[cfg(any(test, feature = "std"))]
pub fn encode(apps: &[AppSpec<'_>], elf: &[u8]) -> Result<std::vec::Vec<u8>, BundleError> {
    let count = u32::try_from(apps.len()).map_err(|_| BundleError::BadAppCount(u32::MAX))?;
    let elf_offset = HEADER_LEN + apps.len() * RECORD_LEN;
    let mut out = std::vec::Vec::with_capacity(elf_offset + elf.len());
    out.extend_from_slice(&BUNDLE_MAGIC);
    out.extend_from_slice(&BUNDLE_VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(elf_offset as u64).to_le_bytes());
    out.extend_from_slice(&(elf.len() as u64).to_le_bytes());
    for (index, app) in apps.iter().enumerate() {
        let name: [u8; NAME_LEN] = encode_name(app.name).ok_or(BundleError::BadName { index })?;
        let program: [u8; NAME_LEN] =
            encode_name(app.program).ok_or(BundleError::BadName { index })?;
        let (policy, limit) = match app.restart {
            RestartPolicy::Never => (0u8, 0u16),
            RestartPolicy::OnFailure { limit } => (1, limit),
            RestartPolicy::Always { limit } => (2, limit),
        };
        out.extend_from_slice(&name);
        out.extend_from_slice(&program);
        out.extend_from_slice(&app.heap_bytes.to_le_bytes());
        out.extend_from_slice(&app.stack_bytes.to_le_bytes());
        out.push(app.log_level);
        out.push(policy);
        out.extend_from_slice(&limit.to_le_bytes());
        out.push(u8::from(app.net.is_some()));
        out.push(u8::from(app.disk.is_some()));
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&app.net.map_or([0; NET_CONFIG_BYTES], |net| net.encode()));
        out.extend_from_slice(
            &app.disk
                .map_or([0; DISK_BINDING_BYTES], |disk| disk.encode()),
        );
    }
    out.extend_from_slice(elf);
    Bundle::parse(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str) -> AppSpec<'_> {
        AppSpec {
            name,
            program: "hello",
            heap_bytes: 1 << 20,
            stack_bytes: 64 << 10,
            log_level: 3,
            restart: RestartPolicy::OnFailure { limit: 3 },
            net: None,
            disk: None,
        }
    }

    #[test]
    fn network_bindings_round_trip_and_may_not_share_addresses() {
        use crate::net::config::{Ipv4Mode, derived_mac};
        let mut a = hello("a");
        a.net = Some(NetConfig {
            ipv4: Ipv4Mode::Static {
                address: [10, 0, 2, 15],
                prefix: 24,
            },
            ..NetConfig::new(derived_mac("a"))
        });
        let mut b = hello("b");
        b.net = Some(NetConfig {
            ipv4: Ipv4Mode::Static {
                address: [10, 0, 2, 16],
                prefix: 24,
            },
            ..NetConfig::new(derived_mac("b"))
        });
        let bytes = encode(&[a, b, hello("c")], b"elf").unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.app(0), a);
        assert_eq!(bundle.app(1), b);
        assert_eq!(bundle.app(2).net, None);
        let mut clash = b;
        clash.net = Some(NetConfig {
            ipv4: Ipv4Mode::Static {
                address: [10, 0, 2, 15],
                prefix: 24,
            },
            ..NetConfig::new(derived_mac("b"))
        });
        assert_eq!(
            encode(&[a, clash], b"").unwrap_err(),
            BundleError::DuplicateAddress { index: 1 }
        );
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 72] = 0xff; // a broadcast MAC
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadNet {
                index: 0,
                error: NetConfigError::BadMac
            }
        );
    }

    #[test]
    fn disk_bindings_round_trip_and_bad_ones_are_named() {
        let mut a = hello("a");
        a.disk = Some(DiskBinding {
            bytes: 64 << 20,
            geometry: crate::blk::DEFAULT_GEOMETRY,
        });
        let bytes = encode(&[hello("b"), a], b"elf").unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.app(1), a);
        assert_eq!(bundle.app(0).disk, None);
        let mut bad = bytes.clone();
        bad[HEADER_LEN + RECORD_LEN + DISK_AT] = 1; // 64 MiB + 1 byte
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadDisk {
                index: 1,
                error: DiskBindingError::BadSize((64 << 20) + 1)
            }
        );
        let mut bad = bytes;
        bad[HEADER_LEN + 69] = 2;
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadDisk {
                index: 0,
                error: DiskBindingError::BadFlag(2)
            }
        );
    }

    #[test]
    fn restart_policies_back_off_and_stop_at_their_limit() {
        assert_eq!(RestartPolicy::Never.next_restart(true, 0), None);
        let on_failure = RestartPolicy::OnFailure { limit: 3 };
        assert_eq!(on_failure.next_restart(false, 0), None);
        assert_eq!(on_failure.next_restart(true, 0), Some(50));
        assert_eq!(on_failure.next_restart(true, 1), Some(100));
        assert_eq!(on_failure.next_restart(true, 2), Some(200));
        assert_eq!(on_failure.next_restart(true, 3), None);
        let always = RestartPolicy::Always { limit: 100 };
        assert_eq!(always.next_restart(false, 0), Some(50));
        assert_eq!(always.next_restart(false, 60), Some(MAX_RESTART_BACKOFF_MS));
        assert_eq!(always.next_restart(false, 100), None);
    }

    #[test]
    fn encoded_bundles_parse_back() {
        let bytes = encode(&[hello("a"), hello("b")], b"\x7fELF...").unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.app_count(), 2);
        assert_eq!(bundle.app(1), hello("b"));
        assert_eq!(bundle.elf(), b"\x7fELF...");
    }

    #[test]
    fn bad_bundles_are_refused_by_name() {
        let good = encode(&[hello("a")], b"elf").unwrap();
        assert_eq!(
            Bundle::parse(&good[..10]).unwrap_err(),
            BundleError::Truncated
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadMagic);
        let mut bad = good.clone();
        bad[8] = 9;
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::UnsupportedVersion(9)
        );
        let mut bad = good.clone();
        bad[12] = 0;
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadAppCount(0)
        );
        let mut bad = good.clone();
        bad[HEADER_LEN + 64] = 6;
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadLogLevel { index: 0 }
        );
        let mut bad = good.clone();
        bad[HEADER_LEN + 65] = 7;
        assert_eq!(
            Bundle::parse(&bad).unwrap_err(),
            BundleError::BadRestartPolicy { index: 0 }
        );
        let mut bad = good.clone();
        bad[24] = 200;
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadImageRange);
        assert_eq!(
            encode(&[hello("a"), hello("a")], b"").unwrap_err(),
            BundleError::DuplicateName { index: 1 }
        );
        let mut tiny = hello("a");
        tiny.heap_bytes = 1;
        assert_eq!(
            encode(&[tiny], b"").unwrap_err(),
            BundleError::BadHeapSize { index: 0 }
        );
        assert_eq!(
            encode(&[hello("this-name-is-far-too-long-to-fit")], b"").unwrap_err(),
            BundleError::BadName { index: 0 }
        );
    }
}
