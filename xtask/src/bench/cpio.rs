//! A writer for the `newc` cpio format, which Linux unpacks as an initramfs. Small enough to own
//! rather than depend on the `cpio` tool being installed.

/// One entry of the archive.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Directory {
        path: &'a str,
    },
    File {
        path: &'a str,
        data: &'a [u8],
        executable: bool,
    },
    CharDevice {
        path: &'a str,
        major: u32,
        minor: u32,
    },
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, rdev: (u32, u32), name: &str) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        size as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// The archive holding `entries`, with its trailer.
pub fn archive(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let ino = index as u32 + 1;
        match entry {
            Entry::Directory { path } => header(&mut out, ino, 0o040_755, 0, (0, 0), path),
            Entry::File {
                path,
                data,
                executable,
            } => {
                let mode = if *executable { 0o100_755 } else { 0o100_644 };
                header(&mut out, ino, mode, data.len(), (0, 0), path);
                out.extend_from_slice(data);
                pad4(&mut out);
            }
            Entry::CharDevice { path, major, minor } => {
                header(&mut out, ino, 0o020_600, 0, (*major, *minor), path)
            }
        }
    }
    header(&mut out, 0, 0, 0, (0, 0), "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_the_trailer_ends_the_archive() {
        let bytes = archive(&[
            Entry::Directory { path: "dev" },
            Entry::CharDevice {
                path: "dev/console",
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init",
                data: b"#!/bin/sh\n",
                executable: true,
            },
        ]);
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.trim_end_matches('\0').ends_with("TRAILER!!!"));
        // The file header: mode 0100755, size 10, name length 5 ("init" + NUL).
        let init = text.find("init\0").unwrap();
        let header = &text[init - 110..init];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "0000000a");
        assert_eq!(&header[94..102], "00000005");
    }
}
