//! The glob matcher against a table of Redis's own cases, and a property test that it agrees
//! with a plain recursive matcher.

use super::*;
use proptest::prelude::*;

#[test]
fn table() {
    let cases: &[(&str, &str, bool)] = &[
        ("*", "", true),
        ("*", "anything", true),
        ("", "", true),
        ("", "a", false),
        ("h?llo", "hello", true),
        ("h?llo", "hllo", false),
        ("h*llo", "hllo", true),
        ("h*llo", "heeeello", true),
        ("h[ae]llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("h[a-b]llo", "hcllo", false),
        ("h[b-a]llo", "hallo", true),
        ("h\\*llo", "h*llo", true),
        ("h\\*llo", "hello", false),
        ("[\\]]", "]", true),
        ("user:*:name", "user:42:name", true),
        ("user:*:name", "user:42:age", false),
        ("*a*b", "xaxxb", true),
        ("*a*b", "xaxxbx", false),
        ("a*", "b", false),
        ("??", "a", false),
        ("[abc", "b", true),
        ("a\\", "a\\", true),
        ("**b", "ab", true),
    ];
    for (pattern, key, expected) in cases {
        assert_eq!(
            glob_match(pattern.as_bytes(), key.as_bytes()),
            *expected,
            "{pattern:?} against {key:?}"
        );
    }
}

/// A direct recursive reading of the same rules, without `[` sets or escapes.
fn reference_match(pattern: &[u8], key: &[u8]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((b'*', rest)) => (0..=key.len()).any(|skip| reference_match(rest, &key[skip..])),
        Some((b'?', rest)) => !key.is_empty() && reference_match(rest, &key[1..]),
        Some((literal, rest)) => key.first() == Some(literal) && reference_match(rest, &key[1..]),
    }
}

proptest! {
    #[test]
    fn agrees_with_the_reference(pattern in "[ab*?]{0,8}", key in "[ab]{0,10}") {
        prop_assert_eq!(
            glob_match(pattern.as_bytes(), key.as_bytes()),
            reference_match(pattern.as_bytes(), key.as_bytes())
        );
    }
}
