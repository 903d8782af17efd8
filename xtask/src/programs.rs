//! The programs the user image can carry, and the image feature that brings each in.
//!
//! `apps/image/src/main.rs` lists the same programs; a test below keeps the two in step.

/// (program name, user-image feature).
pub const PROGRAMS: &[(&str, &str)] = &[
    ("hello", "hello"),
    ("kcalls", "selftest"),
    ("fault-kernel-write", "selftest"),
    ("fault-hlt", "selftest"),
    ("fault-cli", "selftest"),
    ("fault-mov-cr3", "selftest"),
    ("fault-stack-overflow", "selftest"),
    ("fault-panic", "selftest"),
    ("call-bench", "bench"),
    ("switch-bench", "bench"),
    ("crash-panic", "selftest"),
    ("crash-page-fault", "selftest"),
    ("crash-general-protection", "selftest"),
    ("crash-invalid-opcode", "selftest"),
    ("crash-stack-overflow", "selftest"),
    ("crash-debug-trap", "selftest"),
    ("crash-out-of-memory", "selftest"),
    ("crash-holding-lock", "selftest"),
    ("fill", "selftest"),
    ("hog", "selftest"),
    ("forger", "selftest"),
    ("spinner", "selftest"),
    ("sleeper", "selftest"),
    ("counter", "demo"),
    ("quiet-worker", "demo"),
    ("crasher", "demo"),
    ("set-ac", "selftest"),
    ("http", "http"),
    ("echo", "echo"),
    ("kv", "kv"),
    ("net-probe", "selftest"),
    ("spoofer", "selftest"),
    ("net-crasher", "selftest"),
    ("ring-scribbler", "selftest"),
    ("disk-probe", "selftest"),
];

/// The image feature that provides `program`, if any does.
pub fn feature_of(program: &str) -> Option<&'static str> {
    PROGRAMS
        .iter()
        .find(|(name, _)| *name == program)
        .map(|(_, feature)| *feature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_lists_exactly_these_programs() {
        let source =
            std::fs::read_to_string(crate::workspace_root().join("apps/image/src/main.rs"))
                .unwrap();
        let mut found = Vec::new();
        let mut feature = None;
        for line in source.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("#[cfg(feature = \"") {
                feature = rest.split('"').next().map(str::to_owned);
            } else if line.starts_with('"') && line.contains("=>") {
                let name = line.split('"').nth(1).unwrap().to_owned();
                found.push((name, feature.take().expect("each program has a feature")));
            }
        }
        let expected: Vec<(String, String)> = PROGRAMS
            .iter()
            .map(|(name, feature)| (name.to_string(), feature.to_string()))
            .collect();
        assert_eq!(found, expected);
    }
}
