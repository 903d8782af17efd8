//! Host tests of the file system.
