//! echo: TCP and UDP echo servers on libos's sockets.
#![cfg_attr(not(test), no_std)]
