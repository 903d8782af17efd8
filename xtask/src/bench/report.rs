//! The benchmark report: `results.json` (machine-readable), `report.md` (the table the README
//! shows) and `report.svg` (a chart of ours against the Linux guest).

use super::guest_output::Measurement;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// A measured value: the median of its samples and their spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

impl Stat {
    pub fn from_samples(samples: &[f64]) -> Stat {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Stat {
            median: sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            samples: sorted.len(),
        }
    }

    pub fn single(value: f64) -> Stat {
        Stat::from_samples(&[value])
    }

    pub fn from_measurement(m: &Measurement) -> Stat {
        Stat {
            median: m.median,
            min: m.min,
            max: m.max,
            samples: m.runs as usize,
        }
    }

    fn show(&self, unit: &str) -> String {
        self.show_with(unit, true)
    }

    fn show_with(&self, unit: &str, spread: bool) -> String {
        let value = |v: f64| match unit {
            "bytes" if v >= 1024.0 * 1024.0 => format!("{:.2} MiB", v / 1024.0 / 1024.0),
            "bytes" if v >= 1024.0 => format!("{:.1} KiB", v / 1024.0),
            "bytes" => format!("{v:.0} B"),
            "ms" => format!("{v:.0} ms"),
            "MiB" => format!("{v:.0} MiB"),
            "apps" => format!("{v:.0}"),
            LATENCY_MS => format!("{v:.2} ms"),
            "req/s" => format!("{v:.0} req/s"),
            "MB/s" => format!("{v:.1} MB/s"),
            "instructions/request" => format!("{v:.0}"),
            "per request" => format!("{v:.2}"),
            _ => format!("{v:.1}"),
        };
        if spread && self.samples > 1 {
            format!(
                "{} ({}–{}, n={})",
                value(self.median),
                value(self.min),
                value(self.max),
                self.samples
            )
        } else {
            value(self.median)
        }
    }
}

/// A goal for one of our figures, in the row's unit: at most `at_most` (the default), at least
/// it, or below it; where it is set relative to the Linux guest's figure, `of_peer` is the
/// factor (`at_most` is then that factor times the guest's median). Reported with the row (met
/// or not), never enforced: a run that misses it still succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The bound (named for the default kind, so older results still read).
    pub at_most: f64,
    #[serde(default)]
    pub kind: Bound,
    /// The bound as a factor of the Linux guest's median, when it is one.
    #[serde(default)]
    pub of_peer: Option<f64>,
    /// Whether our median is on the right side of the bound.
    pub met: bool,
}

/// Which side of a [`Target`]'s bound our figure should be on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    /// ≤ the bound.
    #[default]
    AtMost,
    /// ≥ the bound.
    AtLeast,
    /// Strictly below the bound.
    Below,
    /// Strictly above the bound ("ahead of").
    Above,
}

impl Bound {
    fn met(self, value: f64, bound: f64) -> bool {
        match self {
            Bound::AtMost => value <= bound,
            Bound::AtLeast => value >= bound,
            Bound::Below => value < bound,
            Bound::Above => value > bound,
        }
    }

    fn sign(self) -> &'static str {
        match self {
            Bound::AtMost => "≤",
            Bound::AtLeast => "≥",
            Bound::Below => "<",
            Bound::Above => ">",
        }
    }
}

impl Target {
    fn show(&self, unit: &str) -> String {
        let bound = Stat::single(self.at_most).show(unit);
        let bound = match self.of_peer {
            Some(factor) => format!("{factor}× Linux = {bound}"),
            None => bound,
        };
        format!(
            "{} {bound}: {}",
            self.kind.sign(),
            if self.met { "met" } else { "not met" }
        )
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The benchmark it belongs to (`boot`, `footprint`, …).
    pub group: String,
    /// What is measured, on our side and (after "vs") on the Linux guest's.
    pub name: String,
    /// What exactly ran and how it was measured.
    pub what: String,
    pub unit: String,
    /// Our figure; `None` when ours could not be measured yet ([`Row::ours_not_run`] says why).
    pub ours: Option<Stat>,
    /// Why our side was not run, in a row that has only the Linux guest's figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ours_not_run: Option<String>,
    /// The Linux guest's figure, where there is a peer for this measure.
    pub peer: Option<Stat>,
    /// ours ÷ peer (medians); below 1 means ours is smaller or faster.
    pub ratio: Option<f64>,
    /// The goal our figure should meet, where the project has set one.
    #[serde(default)]
    pub target: Option<Target>,
}

impl Row {
    /// A measure with the Linux guest's figure beside ours.
    pub fn compared(
        group: &str,
        name: &str,
        what: &str,
        unit: &str,
        ours: Stat,
        peer: Stat,
    ) -> Row {
        let ratio = (peer.median > 0.0).then_some(ours.median / peer.median);
        Row {
            peer: Some(peer),
            ratio,
            ..Row::ours(group, name, what, unit, ours)
        }
    }

    /// A measure the Linux guest has no counterpart for.
    pub fn ours(group: &str, name: &str, what: &str, unit: &str, ours: Stat) -> Row {
        Row {
            group: group.into(),
            name: name.into(),
            what: what.into(),
            unit: unit.into(),
            ours: Some(ours),
            ours_not_run: None,
            peer: None,
            ratio: None,
            target: None,
        }
    }

    /// A measure of the Linux guest whose counterpart on our side was not run, and why (the
    /// row says so in our column; it has no ratio and no target).
    pub fn peer_only(
        group: &str,
        name: &str,
        what: &str,
        unit: &str,
        peer: Stat,
        ours_not_run: &str,
    ) -> Row {
        Row {
            group: group.into(),
            name: name.into(),
            what: what.into(),
            unit: unit.into(),
            ours: None,
            // One line, and no `|` to break the Markdown table.
            ours_not_run: Some(
                ours_not_run
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace('|', "/"),
            ),
            peer: Some(peer),
            ratio: None,
            target: None,
        }
    }

    /// Our column: the figure, or why it was not run.
    fn ours_cell(&self) -> String {
        match (&self.ours, &self.ours_not_run) {
            (Some(ours), _) => ours.show(&self.unit),
            (None, Some(why)) => format!("not run: {why}"),
            (None, None) => "not run".to_owned(),
        }
    }

    /// The row with a goal of at most `at_most` (in its unit) for our median.
    pub fn with_target(self, at_most: f64) -> Row {
        self.with_bound(Bound::AtMost, at_most, None)
    }

    /// The row with a goal relative to the Linux guest's median: ours `kind` `factor` × its.
    /// A row without the guest's figure, or without ours, gets no target.
    pub fn with_target_of_peer(self, kind: Bound, factor: f64) -> Row {
        match &self.peer {
            Some(peer) if self.ours.is_some() => {
                let bound = peer.median * factor;
                self.with_bound(kind, bound, Some(factor))
            }
            _ => self,
        }
    }

    fn with_bound(self, kind: Bound, bound: f64, of_peer: Option<f64>) -> Row {
        let Some(ours) = &self.ours else {
            return self;
        };
        let met = kind.met(ours.median, bound);
        Row {
            target: Some(Target {
                at_most: bound,
                kind,
                of_peer,
                met,
            }),
            ..self
        }
    }

    fn target_cell(&self) -> String {
        self.target
            .as_ref()
            .map_or("—".to_owned(), |target| target.show(&self.unit))
    }
}

/// The Markdown table's header line.
pub const TABLE_HEADER: &str =
    "| benchmark | measure (ours vs Linux) | ours | Linux guest | ours ÷ Linux | target for ours |";

/// Everything one `cargo xtask bench` produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub qemu: String,
    pub accelerator: String,
    /// True under TCG: times are of an emulator, cycles are instruction counts.
    pub emulated: bool,
    /// What the KVM probe found (or that the accelerator was forced).
    #[serde(default)]
    pub kvm: String,
    pub commit: String,
    pub date: String,
    pub smoke: bool,
    /// The Debian kernel package of the Linux guest.
    pub peer_kernel: Option<String>,
    pub rows: Vec<Row>,
}

impl Report {
    /// Writes the three files into `folder`. With `merge`, rows of benchmarks this run did not
    /// measure are kept from the previous `results.json`.
    pub fn write(&self, folder: &Path, merge: bool) -> anyhow::Result<()> {
        std::fs::create_dir_all(folder)?;
        let json_path = folder.join("results.json");
        let mut report = self.clone();
        if merge
            && let Some(previous) = std::fs::read_to_string(&json_path)
                .ok()
                .and_then(|text| serde_json::from_str::<Report>(&text).ok())
        {
            let measured: Vec<&str> = self.rows.iter().map(|row| row.group.as_str()).collect();
            let mut rows: Vec<Row> = previous
                .rows
                .into_iter()
                .filter(|row| !measured.contains(&row.group.as_str()))
                .collect();
            rows.extend(self.rows.iter().cloned());
            let order = |row: &Row| super::BENCHMARKS.iter().position(|b| *b == row.group);
            rows.sort_by_key(order);
            report.rows = rows;
            report.peer_kernel = report.peer_kernel.or(previous.peer_kernel);
        }
        std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", json_path.display()))?;
        std::fs::write(folder.join("report.md"), report.markdown())?;
        std::fs::write(folder.join("report.svg"), report.svg())?;
        println!("{}", report.markdown());
        println!(
            "reports: {}/{{results.json,report.md,report.svg}}",
            folder.display()
        );
        Ok(())
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured {} at commit {} with {} ({}; {}){}; Linux guest: {}.\n",
            self.date,
            self.commit,
            self.qemu,
            if self.emulated {
                "TCG: emulated, so times are the emulator's and ticks are instruction counts"
            } else {
                "hardware-accelerated"
            },
            self.kvm,
            if self.smoke {
                "; SMOKE RUN: minimal iterations, figures are rough"
            } else {
                ""
            },
            self.peer_kernel.as_deref().unwrap_or("not needed")
        );
        let _ = writeln!(out, "{TABLE_HEADER}");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.group,
                row.name,
                row.ours_cell(),
                row.peer
                    .as_ref()
                    .map_or("—".to_owned(), |peer| peer.show(&row.unit)),
                row.ratio
                    .map_or("—".to_owned(), |ratio| format!("{ratio:.3}×")),
                row.target_cell(),
            );
        }
        let _ = writeln!(out, "\nWhat ran:\n");
        for row in &self.rows {
            let _ = writeln!(out, "- **{}** ({}): {}", row.name, row.group, row.what);
        }
        if self.rows.iter().any(|row| row.target.is_some()) {
            let _ = writeln!(
                out,
                "\nTargets are goals for our figures (\"≤ N\": our median at most N; \"≥\" at least, \
                 \"<\" below; \"2× Linux\": relative to the Linux guest's median in the same run); \
                 the table says whether this run met each. A missed target does not fail the run."
            );
        }
        out
    }

    /// A bar chart of every row: ours (and the Linux guest's, where there is one) scaled to the
    /// larger of the two and the target, with the ratio and the target's mark.
    pub fn svg(&self) -> String {
        let (left, bar_width, width) = (20.0, 560.0, 900.0);
        let row_height = |row: &Row| if row.peer.is_some() { 78.0 } else { 60.0 };
        let height = 60.0 + self.rows.iter().map(row_height).sum::<f64>() + 10.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">libos vs Linux guest ({}{}), shorter is better unless a row says more is better</text>",
            escape(&self.accelerator),
            if self.smoke { ", smoke run" } else { "" }
        );
        let _ = writeln!(
            out,
            "<rect x=\"10\" y=\"34\" width=\"12\" height=\"10\" fill=\"{OURS_COLOUR}\"/><text x=\"26\" y=\"43\">libos</text>\
             <rect x=\"80\" y=\"34\" width=\"12\" height=\"10\" fill=\"{PEER_COLOUR}\"/><text x=\"96\" y=\"43\">Linux guest</text>\
             <line x1=\"186\" y1=\"33\" x2=\"186\" y2=\"45\" stroke=\"{TARGET_COLOUR}\" stroke-width=\"2\"/><text x=\"192\" y=\"43\">target for libos</text>"
        );
        let mut top = 60.0;
        for row in &self.rows {
            let largest = row
                .ours
                .as_ref()
                .map_or(0.0, |ours| ours.median)
                .max(row.peer.as_ref().map_or(0.0, |peer| peer.median))
                .max(row.target.as_ref().map_or(0.0, |target| target.at_most))
                .max(f64::MIN_POSITIVE);
            let scaled = |value: f64| (value / largest * bar_width).max(1.0);
            let mut notes = vec![row.group.clone()];
            match row.ratio {
                Some(ratio) => notes.push(format!("ours ÷ Linux = {ratio:.3}×")),
                None if row.peer.is_none() => notes.push("libos only: no Linux counterpart".into()),
                None if row.ours.is_none() => notes.push("libos not run".into()),
                None => {}
            }
            if let Some(target) = &row.target {
                notes.push(format!("target {}", target.show(&row.unit)));
            }
            if more_is_better(row) {
                notes.push("more is better".into());
            }
            let _ = writeln!(
                out,
                "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{}</text>",
                top + 14.0,
                escape(&row.name)
            );
            let _ = writeln!(
                out,
                "<text x=\"10\" y=\"{:.0}\" fill=\"#555\">{}</text>",
                top + 29.0,
                escape(&notes.join(" · "))
            );
            // Ours first (a row whose side was not run says so in place of its bar).
            let ours_label = match &row.ours {
                Some(ours) => ours.show_with(&row.unit, false),
                None => "libos: not run (the report says why)".to_owned(),
            };
            let mut bars: Vec<(&str, Option<&Stat>, String)> =
                vec![(OURS_COLOUR, row.ours.as_ref(), ours_label)];
            if let Some(peer) = &row.peer {
                bars.push((PEER_COLOUR, Some(peer), peer.show_with(&row.unit, false)));
            }
            for (index, (colour, stat, label)) in bars.iter().enumerate() {
                let y = top + 36.0 + 18.0 * index as f64;
                let length = stat.map_or(0.0, |stat| scaled(stat.median));
                if stat.is_some() {
                    let _ = write!(
                        out,
                        "<rect x=\"{left}\" y=\"{y:.0}\" width=\"{length:.1}\" height=\"14\" fill=\"{colour}\"/>"
                    );
                }
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
                    left + length + 4.0,
                    y + 11.0,
                    escape(label)
                );
            }
            if let Some(target) = &row.target {
                let x = left + scaled(target.at_most);
                let _ = writeln!(
                    out,
                    "<line x1=\"{x:.1}\" y1=\"{:.0}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"{TARGET_COLOUR}\" stroke-width=\"2\"/>",
                    top + 33.0,
                    top + 36.0 + 18.0 * bars.len() as f64
                );
            }
            top += row_height(row);
        }
        let _ = writeln!(out, "</svg>");
        out
    }
}

/// The unit of latencies (shown to a hundredth of a millisecond).
pub const LATENCY_MS: &str = "ms (latency)";

/// Counts of apps that fit and throughputs are better large; every other figure (time, ticks,
/// bytes) small.
fn more_is_better(row: &Row) -> bool {
    matches!(row.unit.as_str(), "apps" | "req/s" | "MB/s")
}

const OURS_COLOUR: &str = "#2b6cb0";
const PEER_COLOUR: &str = "#a0aec0";
const TARGET_COLOUR: &str = "#c53030";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            qemu: "QEMU 7.2".into(),
            accelerator: "tcg".into(),
            emulated: true,
            kvm: "KVM not used: no /dev/kvm".into(),
            commit: "abc".into(),
            date: "2026-11-26".into(),
            smoke: false,
            peer_kernel: Some("linux-image-x".into()),
            rows: vec![
                Row::compared(
                    "boot",
                    "boot <BIOS>",
                    "w",
                    "ms",
                    Stat::from_samples(&[3.0, 1.0, 2.0]),
                    Stat::single(8.0),
                ),
                Row::ours("scale", "apps", "w", "apps", Stat::single(1024.0)),
                Row::ours("calls", "spawn", "w", "ticks/op", Stat::single(1057.1))
                    .with_target(300.0),
            ],
        }
    }

    #[test]
    fn stats_take_the_median_and_spread() {
        let stat = Stat::from_samples(&[5.0, 1.0, 3.0, 9.0, 7.0]);
        assert_eq!(
            (stat.median, stat.min, stat.max, stat.samples),
            (5.0, 1.0, 9.0, 5)
        );
    }

    #[test]
    fn markdown_has_a_row_per_measure_with_the_ratio() {
        let text = report().markdown();
        assert!(text.contains(TABLE_HEADER), "{text}");
        assert!(
            text.contains("| boot | boot <BIOS> | 2 ms (1 ms–3 ms, n=3) | 8 ms | 0.250× | — |"),
            "{text}"
        );
        assert!(
            text.contains("| scale | apps | 1024 | — | — | — |"),
            "{text}"
        );
        assert!(
            text.contains("| calls | spawn | 1057.1 | — | — | ≤ 300.0: not met |"),
            "{text}"
        );
        assert!(text.contains("A missed target does not fail the run"));
        assert!(text.contains("TCG: emulated"));
    }

    #[test]
    fn svg_escapes_text_and_draws_every_row() {
        let svg = report().svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("boot &lt;BIOS&gt;"));
        assert!(!svg.contains("<BIOS>"));
        assert_eq!(
            svg.matches(&format!("fill=\"{OURS_COLOUR}\"")).count(),
            4,
            "legend + one bar per row"
        );
        assert_eq!(
            svg.matches(&format!("fill=\"{PEER_COLOUR}\"")).count(),
            2,
            "legend + the compared row's bar"
        );
        assert_eq!(
            svg.matches(&format!("stroke=\"{TARGET_COLOUR}\"")).count(),
            2,
            "legend + the one target"
        );
        assert!(svg.contains("target ≤ 300.0: not met"));
        assert_eq!(
            svg.matches("more is better").count(),
            2,
            "title + the apps row"
        );
    }

    #[test]
    fn targets_say_whether_they_are_met() {
        let stat = Stat::single(278.0);
        let row = Row::ours("switch", "s", "w", "ticks/op", stat.clone()).with_target(200.0);
        assert_eq!(row.target.as_ref().map(|t| t.met), Some(false));
        let row = Row::ours("switch", "s", "w", "ticks/op", stat).with_target(278.0);
        assert_eq!(row.target_cell(), "≤ 278.0: met");
        let bytes = Row::ours("scale", "m", "w", "bytes", Stat::single(20.0 * 1024.0))
            .with_target(24.0 * 1024.0);
        assert_eq!(bytes.target_cell(), "≤ 24.0 KiB: met");
    }

    #[test]
    fn targets_relative_to_the_peer() {
        let row = |ours: f64, peer: f64, unit: &str| {
            Row::compared(
                "http",
                "r",
                "w",
                unit,
                Stat::single(ours),
                Stat::single(peer),
            )
        };
        let rps = row(3000.0, 1000.0, "req/s").with_target_of_peer(Bound::AtLeast, 2.0);
        assert_eq!(rps.target_cell(), "≥ 2× Linux = 2000 req/s: met");
        let rps = row(1500.0, 1000.0, "req/s").with_target_of_peer(Bound::AtLeast, 2.0);
        assert_eq!(rps.target_cell(), "≥ 2× Linux = 2000 req/s: not met");
        let p99 = row(5.0, 5.0, LATENCY_MS).with_target_of_peer(Bound::Below, 1.0);
        assert_eq!(p99.target_cell(), "< 1× Linux = 5.00 ms: not met");
        let ours_only = Row::ours("http", "k", "w", "per request", Stat::single(1.0))
            .with_target_of_peer(Bound::AtMost, 0.5);
        assert_eq!(ours_only.target, None);
        let old: Target = serde_json::from_str(r#"{"at_most": 3.0, "met": true}"#).unwrap();
        assert_eq!((old.kind, old.of_peer), (Bound::AtMost, None));
    }

    #[test]
    fn a_row_whose_side_was_not_run_says_why_and_draws_only_the_peer() {
        let row = Row::peer_only(
            "kv",
            "SET durable",
            "w",
            "req/s",
            Stat::single(1000.0),
            "pending: a.toml:3: unknown\n  field | `disk`",
        )
        .with_target_of_peer(Bound::Above, 1.0);
        assert_eq!(row.target, None, "no target without our figure");
        let mut report = report();
        report.rows = vec![row];
        let text = report.markdown();
        assert!(
            text.contains(
                "| kv | SET durable | not run: pending: a.toml:3: unknown field / `disk` | \
                 1000 req/s | — | — |"
            ),
            "{text}"
        );
        let svg = report.svg();
        assert_eq!(svg.matches(&format!("fill=\"{OURS_COLOUR}\"")).count(), 1);
        assert_eq!(svg.matches(&format!("fill=\"{PEER_COLOUR}\"")).count(), 2);
        assert!(svg.contains("libos: not run"));
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rows[0].ours, None);
        assert_eq!(
            back.rows[0].ours_not_run.as_deref(),
            Some("pending: a.toml:3: unknown field / `disk`")
        );
        let ahead = Row::compared(
            "kv",
            "r",
            "w",
            "req/s",
            Stat::single(1000.0),
            Stat::single(1000.0),
        )
        .with_target_of_peer(Bound::Above, 1.0);
        assert_eq!(ahead.target_cell(), "> 1× Linux = 1000 req/s: not met");
    }

    #[test]
    fn a_partial_run_keeps_the_other_benchmarks_rows() {
        let folder = std::env::temp_dir().join(format!("libos-report-{}", std::process::id()));
        let full = report();
        full.write(&folder, false).unwrap();
        let mut partial = report();
        partial.rows.retain(|row| row.group == "scale");
        partial.rows[0].ours = Some(Stat::single(512.0));
        partial.write(&folder, true).unwrap();
        let merged: Report =
            serde_json::from_str(&std::fs::read_to_string(folder.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(merged.rows.len(), 3);
        assert_eq!(merged.rows[0].group, "boot");
        assert_eq!(merged.rows[1].group, "calls");
        assert_eq!(merged.rows[2].ours.as_ref().map(|s| s.median), Some(512.0));
        let _ = std::fs::remove_dir_all(folder);
    }
}
