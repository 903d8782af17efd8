//! Redis's glob patterns (`KEYS`, `SCAN ... MATCH`), as `stringmatchlen` reads them:
//! - `*` any run of bytes, `?` any one byte;
//! - `[abc]` one of the set, `[a-z]` a range (either order), `[^...]` not in the set;
//! - `\x` the byte `x` itself, outside or inside brackets.
//!
//! Matching is byte-wise and case-sensitive. An unclosed `[` takes the rest of the pattern as
//! its set, as Redis does. The matcher backtracks only to the last `*`, so it runs in
//! O(pattern × key) time whatever the pattern.

/// Whether `key` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let mut pattern_position = 0;
    let mut key_position = 0;
    // Where to resume after the last `*`: the pattern after it, and the key byte it would
    // swallow next.
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if pattern_position < pattern.len() {
            if pattern[pattern_position] == b'*' {
                while pattern.get(pattern_position) == Some(&b'*') {
                    pattern_position += 1;
                }
                if pattern_position == pattern.len() {
                    return true;
                }
                backtrack = Some((pattern_position, key_position));
                continue;
            }
            if let Some(&byte) = key.get(key_position)
                && let Some(after) = match_one(pattern, pattern_position, byte)
            {
                pattern_position = after;
                key_position += 1;
                continue;
            }
        } else if key_position == key.len() {
            return true;
        }
        // A mismatch: let the last `*` swallow one more byte, if there is one.
        match backtrack {
            Some((after_star, swallowed)) if swallowed < key.len() => {
                backtrack = Some((after_star, swallowed + 1));
                pattern_position = after_star;
                key_position = swallowed + 1;
            }
            _ => return false,
        }
    }
}

/// Matches one non-`*` pattern element at `position` against `byte`: the position after the
/// element if it matches, `None` if not.
fn match_one(pattern: &[u8], position: usize, byte: u8) -> Option<usize> {
    match pattern[position] {
        b'?' => Some(position + 1),
        b'\\' if position + 1 < pattern.len() => {
            (pattern[position + 1] == byte).then_some(position + 2)
        }
        b'[' => match_set(pattern, position + 1, byte),
        literal => (literal == byte).then_some(position + 1),
    }
}

/// Matches the bracket set whose body starts at `position`.
fn match_set(pattern: &[u8], mut position: usize, byte: u8) -> Option<usize> {
    let negated = pattern.get(position) == Some(&b'^');
    if negated {
        position += 1;
    }
    let mut matched = false;
    // An unclosed set runs to the end of the pattern.
    while let Some(&element) = pattern.get(position) {
        if element == b']' {
            position += 1;
            break;
        }
        if element == b'\\' && position + 1 < pattern.len() {
            matched |= pattern[position + 1] == byte;
            position += 2;
        } else if pattern.get(position + 1) == Some(&b'-') && position + 2 < pattern.len() {
            let (low, high) = (element, pattern[position + 2]);
            let (low, high) = if low <= high {
                (low, high)
            } else {
                (high, low)
            };
            matched |= (low..=high).contains(&byte);
            position += 3;
        } else {
            matched |= element == byte;
            position += 1;
        }
    }
    (matched != negated).then_some(position)
}

#[cfg(test)]
mod tests;
