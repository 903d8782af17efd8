//! Checks of the repository's own conventions (see DESIGN.md, "Habits we keep"), run by
//! `cargo test` so CI enforces them.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(folder: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&crate::workspace_root().join(folder), &mut files);
        files.sort();
        files
    }

    fn relative(path: &Path) -> String {
        path.strip_prefix(crate::workspace_root())
            .unwrap()
            .display()
            .to_string()
    }

    #[test]
    fn apps_contain_no_unsafe() {
        for path in rust_files("apps") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("unsafe"),
                "{} mentions unsafe",
                relative(&path)
            );
        }
    }

    #[test]
    fn libos_uses_unsafe_only_in_sys_and_drivers() {
        for path in rust_files("libos/src") {
            let name = relative(&path);
            if name.starts_with("libos/src/sys/") || name.starts_with("libos/src/drivers/") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap();
                assert!(
                    !code.contains("unsafe ") && !code.contains("unsafe("),
                    "{name} uses unsafe outside sys/drivers: {line}"
                );
            }
        }
    }

    #[test]
    fn every_unsafe_block_and_impl_has_a_safety_comment() {
        let mut count = 0;
        for folder in ["kernel-lite/src", "libos/src"] {
            for path in rust_files(folder) {
                let text = std::fs::read_to_string(&path).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                for (index, line) in lines.iter().enumerate() {
                    let code = line.split("//").next().unwrap();
                    if !(code.contains("unsafe {") || code.contains("unsafe impl")) {
                        continue;
                    }
                    count += 1;
                    let window = &lines[index.saturating_sub(14)..=index];
                    assert!(
                        window.iter().any(|l| l.contains("SAFETY:")),
                        "{}:{} has an unsafe block without a SAFETY comment",
                        relative(&path),
                        index + 1
                    );
                }
            }
        }
        println!("unsafe blocks and impls in kernel-lite and libos: {count}");
    }

    #[test]
    fn every_source_file_starts_with_a_module_doc() {
        for folder in ["kernel-lite", "libos/src", "apps", "xtask/src", "tests"] {
            for path in rust_files(folder) {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.trim_start().starts_with("//!"),
                    "{} has no module doc (//!) at its top",
                    relative(&path)
                );
            }
        }
    }

    /// The libos features cargo turns on in a user image built with `image_features`, as
    /// `cargo tree` resolves them (so a crate that pulls them in indirectly counts too).
    fn libos_features_in_image(image_features: &[&str]) -> Vec<String> {
        let output =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .current_dir(crate::workspace_root())
                .args(["tree", "--quiet", "--package", "user-image", "--target"])
                .arg(crate::compile::TARGET)
                .args([
                    "--edges", "features", "--invert", "libos", "--prefix", "none",
                ])
                .args(["--features", &image_features.join(",")])
                .output()
                .expect("running cargo tree");
        assert!(
            output.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut features: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("libos feature \""))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        features.sort();
        features.dedup();
        features
    }

    /// libos's deliberate faults (`libos::faults`) are for the test programs alone: no shipped
    /// bundle's image may carry them.
    #[test]
    fn no_shipped_bundle_carries_the_deliberate_faults() {
        const FAULTS: &str = "deliberate-faults";
        assert!(
            libos_features_in_image(&["selftest"])
                .iter()
                .any(|f| f == FAULTS),
            "the test programs' image should carry {FAULTS}: is this check still looking at the right feature?"
        );
        let folder = crate::workspace_root().join("apps/bundles");
        let mut bundles = 0;
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|ext| ext != "toml") {
                continue;
            }
            let manifest = crate::bundle::load(&path).unwrap();
            let image_features = crate::bundle::features(&manifest);
            let libos_features = libos_features_in_image(&image_features);
            assert!(
                !libos_features.iter().any(|f| f == FAULTS),
                "{}: its programs come from image features {image_features:?}, which turn on libos's {FAULTS}; a shipped bundle must use programs from crates without it (apps/demo, apps/hello, apps/bench)",
                relative(&path)
            );
            bundles += 1;
        }
        assert!(bundles >= 4, "found only {bundles} shipped bundles");
    }

    #[test]
    fn readme_and_ci_use_the_documented_commands() {
        let root = crate::workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for command in ["cargo xtask run", "cargo xtask test", "cargo xtask bench"] {
            assert!(
                readme.contains(command),
                "README.md does not mention `{command}`"
            );
        }
        let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        assert!(
            ci.contains("\ncargo xtask test"),
            ".ci/run does not run `cargo xtask test`"
        );
    }
}
