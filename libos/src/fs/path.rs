//! Paths and names: '/'-separated, relative to the app's root (a leading '/' and a trailing
//! '/' are allowed), every component a valid name.

use alloc::vec::Vec;

/// The longest name, in bytes (UTF-8).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// An empty component (`a//b`).
    Empty,
    /// `.` or `..`: there are no relative components.
    Dot,
    /// A NUL byte.
    Nul,
    /// Longer than [`MAX_NAME_BYTES`].
    TooLong,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NameError::Empty => "an empty path component",
            NameError::Dot => "'.' and '..' are not allowed in paths",
            NameError::Nul => "a NUL byte in a name",
            NameError::TooLong => "a name longer than 255 bytes",
        })
    }
}

/// Checks one name (a path component).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name == "." || name == ".." {
        Err(NameError::Dot)
    } else if name.contains('\0') {
        Err(NameError::Nul)
    } else if name.len() > MAX_NAME_BYTES {
        Err(NameError::TooLong)
    } else if name.contains('/') {
        Err(NameError::Empty)
    } else {
        Ok(())
    }
}

/// The components of `path`; empty for the root (`""` or `"/"`).
pub fn components(path: &str) -> Result<Vec<&str>, NameError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Ok(Vec::new());
    }
    path.split('/')
        .map(|name| validate_name(name).map(|()| name))
        .collect()
}
