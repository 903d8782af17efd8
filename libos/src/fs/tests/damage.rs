//! Damaged, foreign and wrong-sized extents: byte flips anywhere are detected (a mount error
//! by name, or a read error) and never returned as good data, never a panic; extents that
//! are not volumes are refused by name and never reformatted.
