//! The store's byte accounting, lazy expiry and scan cursors at the edges.

use super::*;

fn set(store: &mut Store, key: &str, value: &str, expires_at_ms: Option<u64>) {
    store.apply(&Mutation::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        expires_at_ms,
    });
}

#[test]
fn bytes_are_counted_in_and_out() {
    let mut store = Store::new();
    set(&mut store, "key", "value", None);
    assert_eq!(store.used_bytes(), 3 + 5 + ENTRY_OVERHEAD_BYTES);
    assert_eq!(store.growth_if_set(b"key", b"value!"), 1);
    assert_eq!(store.growth_if_set(b"key", b"v"), 0);
    set(&mut store, "key", "v", Some(5));
    assert_eq!(store.used_bytes(), 3 + 1 + ENTRY_OVERHEAD_BYTES);
    assert_eq!(store.keys_with_expiry(), 1);
    assert!(store.get(b"key", 5).is_none(), "expired at its deadline");
    assert_eq!(store.used_bytes(), 0);
    assert_eq!(store.keys_with_expiry(), 0);
    assert!(store.is_empty());
}

#[test]
fn set_expiry_on_a_missing_key_does_nothing() {
    let mut store = Store::new();
    store.apply(&Mutation::SetExpiry {
        key: b"nope".to_vec(),
        expires_at_ms: Some(1),
    });
    assert!(store.is_empty());
    assert_eq!(store.keys_with_expiry(), 0);
}

#[test]
fn scan_with_count_one_visits_everything_once() {
    let mut store = Store::new();
    for index in 0..50 {
        set(&mut store, &alloc::format!("k{index}"), "v", None);
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let batch = store.scan(cursor, 1, 0, |_| true);
        assert!(
            batch.keys.len() <= 1 || batch.next_cursor == 0 || {
                // Only keys sharing a hash come together.
                let hashes: Vec<u64> = batch.keys.iter().map(|key| key_hash(key)).collect();
                hashes.windows(2).all(|pair| pair[0] == pair[1])
            }
        );
        seen.extend(batch.keys);
        if batch.next_cursor == 0 {
            break;
        }
        cursor = batch.next_cursor;
    }
    seen.sort();
    let mut expected = store.keys(0, |_| true);
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn expired_keys_are_not_listed() {
    let mut store = Store::new();
    set(&mut store, "old", "v", Some(10));
    set(&mut store, "new", "v", None);
    assert_eq!(store.keys(10, |_| true), alloc::vec![b"new".to_vec()]);
    assert_eq!(
        store.scan(0, 10, 10, |_| true).keys,
        alloc::vec![b"new".to_vec()]
    );
}
