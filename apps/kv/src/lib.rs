//! kv: a Redis-protocol (RESP2) key-value server on libos's sockets.
#![cfg_attr(not(test), no_std)]
