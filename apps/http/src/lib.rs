//! http: an HTTP/1.1 server on libos's sockets.
#![cfg_attr(not(test), no_std)]
