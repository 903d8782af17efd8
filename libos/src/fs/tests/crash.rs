//! Power cuts at every point of recorded workloads.
