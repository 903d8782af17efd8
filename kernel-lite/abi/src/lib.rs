//! The contract between kernel-lite (ring 0) and libos (ring 3).
//!
//! Both sides depend on this crate and nothing else of each other: the kcall numbers and their
//! error codes, the user-space layout (where the image, the info page and each app's slot live),
//! the read-only info page kernel-lite publishes, the boot bundle that the xtask writes into the
//! ramdisk, and the exit statuses the image reports to the host. All of it is plain data and
//! parsing code, so it is tested on the host.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod blk;
pub mod bundle;
pub mod devices;
pub mod elf;
pub mod exit;
pub mod kcall;
pub mod layout;
pub mod net;

/// Copies `text` into a fixed, NUL-padded name field; `None` when it does not fit or is empty.
pub fn encode_name<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.is_empty() || text.len() > N {
        return None;
    }
    let mut field = [0u8; N];
    field[..text.len()].copy_from_slice(text.as_bytes());
    Some(field)
}

/// Reads a NUL-padded name field back; `None` when it is not UTF-8 or empty.
pub fn decode_name(field: &[u8]) -> Option<&str> {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    match core::str::from_utf8(&field[..len]) {
        Ok(name) if !name.is_empty() => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_overflow() {
        let field: [u8; 8] = encode_name("hello").unwrap();
        assert_eq!(decode_name(&field), Some("hello"));
        assert!(encode_name::<4>("hello").is_none());
        assert!(encode_name::<4>("").is_none());
        assert_eq!(decode_name(&[0xff, 0]), None);
    }
}
