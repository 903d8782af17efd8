//! Bundle manifests: the TOML file that names the apps of an image and each app's resources.
//!
//! A manifest is checked completely on the host before anything is built; every problem is
//! reported with the file, the line, what is wrong and how to fix it.

use lite_abi::bundle::{AppSpec, MAX_HEAP_BYTES, MAX_STACK_BYTES, MIN_HEAP_BYTES, RestartPolicy};
use lite_abi::layout::{MAX_APPS, NAME_LEN};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bundle's name (the file stem).
    pub name: String,
    pub path: PathBuf,
    pub apps: Vec<App>,
}

/// One app of a manifest, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub program: String,
    pub heap_bytes: u64,
    pub stack_bytes: u64,
    pub log_level: u8,
    pub restart: RestartPolicy,
}

impl App {
    pub fn spec(&self) -> AppSpec<'_> {
        AppSpec {
            name: &self.name,
            program: &self.program,
            heap_bytes: self.heap_bytes,
            stack_bytes: self.stack_bytes,
            log_level: self.log_level,
            restart: self.restart,
            net: None,
        }
    }
}

pub const DEFAULT_STACK_BYTES: u64 = 64 * 1024;
pub const DEFAULT_RESTART_LIMIT: u16 = 3;

/// What is wrong with a manifest, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawApp {
    name: Spanned<String>,
    program: Option<Spanned<String>>,
    memory: Spanned<Size>,
    stack: Option<Spanned<Size>>,
    log: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    restart_limit: Option<Spanned<i64>>,
}

/// A size written as a number of bytes or a string like "64 KiB", "1 MiB", "2 GiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(i64),
    Text(String),
}

/// Parses "64 KiB", "1MiB", "4096" and the like into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Option<Range<usize>>, problem: String, fix: &str) -> ManifestError {
        ManifestError {
            file: self.file.to_path_buf(),
            line: span.map(|span| line_number(self.text, span.start)),
            problem,
            fix: fix.to_owned(),
        }
    }

    fn size(
        &self,
        size: &Spanned<Size>,
        what: &str,
        min: u64,
        max: u64,
    ) -> Result<u64, ManifestError> {
        let bytes = match size.get_ref() {
            Size::Bytes(n) => u64::try_from(*n).ok(),
            Size::Text(text) => parse_size(text),
        };
        let fix = format!(
            "write a size between {} and {}, for example \"{}\"",
            human(min),
            human(max),
            human(min.max(1 << 20).min(max))
        );
        match bytes {
            None => Err(self.error(Some(size.span()), format!("{what} is not a size"), &fix)),
            Some(0) => Err(self.error(Some(size.span()), format!("{what} is zero"), &fix)),
            Some(b) if b < min => Err(self.error(
                Some(size.span()),
                format!(
                    "{what} of {} is below the minimum of {}",
                    human(b),
                    human(min)
                ),
                &fix,
            )),
            Some(b) if b > max => Err(self.error(
                Some(size.span()),
                format!(
                    "{what} of {} is absurd (more than {})",
                    human(b),
                    human(max)
                ),
                &fix,
            )),
            Some(b) => Ok(b),
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_number(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and checks a manifest's text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let checker = Checker { file, text };
    let raw: RawManifest = toml::from_str(text).map_err(|error| {
        let problem = error.message().trim().to_owned();
        let fix = if problem.contains("unknown field") {
            "use only the keys name, program, memory, stack, log, restart, restart-limit"
        } else if problem.contains("missing field") {
            "every [[app]] needs at least `name` and `memory`"
        } else {
            "write valid TOML: a list of [[app]] tables"
        };
        checker.error(error.span(), problem, fix)
    })?;
    if raw.app.is_empty() {
        return Err(checker.error(
            None,
            "the bundle has no apps".into(),
            "add an [[app]] table with a name and a memory quota",
        ));
    }
    if raw.app.len() > MAX_APPS {
        return Err(checker.error(
            Some(raw.app[MAX_APPS].span()),
            format!(
                "the bundle has {} apps; an image runs at most {MAX_APPS}",
                raw.app.len()
            ),
            "split the apps over several bundles",
        ));
    }
    let mut apps: Vec<App> = Vec::new();
    for entry in &raw.app {
        let raw_app = entry.get_ref();
        let name = raw_app.name.get_ref().clone();
        if name.is_empty()
            || name.len() > NAME_LEN
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(checker.error(
                Some(raw_app.name.span()),
                format!("app name '{name}' is not 1 to {NAME_LEN} letters, digits, '-' or '_'"),
                "pick a short name such as \"web-1\"",
            ));
        }
        if apps.iter().any(|app| app.name == name) {
            return Err(checker.error(
                Some(raw_app.name.span()),
                format!("app name '{name}' is used twice"),
                "give every app of the bundle its own name",
            ));
        }
        let program_field = raw_app.program.as_ref().unwrap_or(&raw_app.name);
        let program = program_field.get_ref().clone();
        if crate::programs::feature_of(&program).is_none() {
            let known: Vec<&str> = crate::programs::PROGRAMS
                .iter()
                .map(|(name, _)| *name)
                .collect();
            return Err(checker.error(
                Some(program_field.span()),
                format!("unknown app program '{program}'"),
                &format!("use one of: {}", known.join(", ")),
            ));
        }
        let heap_bytes = checker.size(&raw_app.memory, "memory", MIN_HEAP_BYTES, MAX_HEAP_BYTES)?;
        let stack_bytes = match &raw_app.stack {
            Some(stack) => checker.size(stack, "stack", 4096, MAX_STACK_BYTES)?,
            None => DEFAULT_STACK_BYTES,
        };
        let log_level = match raw_app.log.as_ref() {
            None => 3,
            Some(level) => match level.get_ref().as_str() {
                "off" => 0,
                "error" => 1,
                "warn" => 2,
                "info" => 3,
                "debug" => 4,
                "trace" => 5,
                other => {
                    return Err(checker.error(
                        Some(level.span()),
                        format!("unknown log level '{other}'"),
                        "use off, error, warn, info, debug or trace",
                    ));
                }
            },
        };
        let limit = match &raw_app.restart_limit {
            None => DEFAULT_RESTART_LIMIT,
            Some(limit) => u16::try_from(*limit.get_ref()).map_err(|_| {
                checker.error(
                    Some(limit.span()),
                    format!("restart-limit {} is out of range", limit.get_ref()),
                    "use a limit from 0 to 65535",
                )
            })?,
        };
        let restart = match raw_app.restart.as_ref() {
            None => RestartPolicy::Never,
            Some(policy) => match policy.get_ref().as_str() {
                "never" => RestartPolicy::Never,
                "on-failure" => RestartPolicy::OnFailure { limit },
                "always" => RestartPolicy::Always { limit },
                other => {
                    return Err(checker.error(
                        Some(policy.span()),
                        format!("unknown restart policy '{other}'"),
                        "use never, on-failure or always",
                    ));
                }
            },
        };
        apps.push(App {
            name,
            program,
            heap_bytes,
            stack_bytes,
            log_level,
            restart,
        });
    }
    Ok(Manifest {
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: file.to_path_buf(),
        apps,
    })
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!("cannot read bundle manifest {}: {error}", path.display())
    })?;
    Ok(parse(path, &text)?)
}

/// Where the bundle called `name` lives: `apps/bundles/NAME.toml`, or `tests/bundles/NAME.toml`.
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let root = crate::workspace_root();
    let candidates = [root.join("apps/bundles"), root.join("tests/bundles")];
    for folder in &candidates {
        let path = folder.join(format!("{name}.toml"));
        if path.is_file() {
            return Ok(path);
        }
    }
    let mut known: Vec<String> = candidates
        .iter()
        .filter_map(|folder| std::fs::read_dir(folder).ok())
        .flatten()
        .filter_map(|entry| {
            entry
                .ok()?
                .path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    known.sort();
    anyhow::bail!("no bundle named '{name}' (known: {})", known.join(", "))
}

/// The image features the manifest's programs need, sorted and without repeats.
pub fn features(manifest: &Manifest) -> Vec<&'static str> {
    let mut features: Vec<&'static str> = manifest
        .apps
        .iter()
        .filter_map(|app| crate::programs::feature_of(&app.program))
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Manifest, ManifestError> {
        parse(Path::new("bundles/x.toml"), text)
    }

    #[test]
    fn the_shipped_bundles_parse() {
        for folder in ["apps/bundles", "tests/bundles"] {
            for entry in std::fs::read_dir(crate::workspace_root().join(folder)).unwrap() {
                let path = entry.unwrap().path();
                load(&path).unwrap_or_else(|error| panic!("{error}"));
            }
        }
    }

    #[test]
    fn a_full_app_parses_with_defaults() {
        let manifest =
            check("[[app]]\nname = \"a\"\nprogram = \"hello\"\nmemory = \"2 MiB\"\n").unwrap();
        assert_eq!(
            manifest.apps,
            [App {
                name: "a".into(),
                program: "hello".into(),
                heap_bytes: 2 << 20,
                stack_bytes: DEFAULT_STACK_BYTES,
                log_level: 3,
                restart: RestartPolicy::Never,
            }]
        );
        let manifest = check("[[app]]\nname = \"hello\"\nmemory = 1048576\nrestart = \"on-failure\"\nrestart-limit = 5\nlog = \"debug\"\n").unwrap();
        assert_eq!(
            manifest.apps[0].restart,
            RestartPolicy::OnFailure { limit: 5 }
        );
        assert_eq!(manifest.apps[0].log_level, 4);
    }

    fn refused(text: &str) -> ManifestError {
        check(text).expect_err("manifest should be refused")
    }

    #[test]
    fn bad_manifests_name_the_file_the_line_and_the_fix() {
        let error = refused("[[app]]\nname = \"a\"\nprogram = \"nope\"\nmemory = \"1 MiB\"\n");
        assert_eq!(error.line, Some(3));
        assert!(
            error.problem.contains("unknown app program 'nope'"),
            "{error}"
        );
        assert!(error.fix.contains("hello"), "{error}");
        assert!(
            error.to_string().starts_with("bundles/x.toml:3: "),
            "{error}"
        );

        let error = refused(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n",
        );
        assert_eq!(error.line, Some(5));
        assert!(error.problem.contains("used twice"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = 0\n");
        assert_eq!(error.line, Some(3));
        assert!(error.problem.contains("memory is zero"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"900 GiB\"\n");
        assert!(error.problem.contains("absurd"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\ncolour = \"red\"\n");
        assert_eq!(error.line, Some(4));
        assert!(error.problem.contains("unknown field"), "{error}");
        assert!(error.fix.contains("restart-limit"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"lots\"\n");
        assert!(error.problem.contains("not a size"), "{error}");

        let error =
            refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\nrestart = \"sometimes\"\n");
        assert_eq!(error.line, Some(4));

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\nlog = \"loud\"\n");
        assert!(error.problem.contains("log level"), "{error}");

        assert!(refused("").problem.contains("no apps"));
        assert!(
            refused("[[app]]\nmemory = \"1 MiB\"\n")
                .problem
                .contains("missing field")
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64 KiB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 TB"), None);
        assert_eq!(parse_size("99999999999999 GiB"), None);
    }
}
