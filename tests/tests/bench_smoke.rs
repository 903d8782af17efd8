//! `cargo xtask bench --smoke`: every benchmark runs against the Linux guest with minimal
//! iterations and the reports are valid. No timing thresholds: figures are only checked to be
//! present and sane.

use xtask::bench::report::Report;
use xtask::bench::{BENCHMARKS, Settings};

#[test]
fn the_benchmark_suite_runs_and_writes_valid_reports() {
    let settings = Settings::new(true);
    let report = xtask::bench::run(None, settings.clone()).expect("the smoke run succeeds");
    for name in BENCHMARKS {
        assert!(
            report.rows.iter().any(|row| row.group == *name),
            "no rows for benchmark {name}"
        );
    }
    for row in &report.rows {
        assert!(
            row.ours.median.is_finite() && row.ours.median > 0.0,
            "{row:?}"
        );
        if let Some(peer) = &row.peer {
            assert!(peer.median.is_finite() && peer.median > 0.0, "{row:?}");
            assert!(row.ratio.is_some_and(f64::is_finite), "{row:?}");
        }
    }
    assert!(
        report.rows.iter().filter(|row| row.peer.is_some()).count() >= 8,
        "too few comparisons"
    );
    assert!(report.smoke && report.peer_kernel.is_some());

    let json = std::fs::read_to_string(settings.out.join("results.json")).unwrap();
    let parsed: Report = serde_json::from_str(&json).expect("results.json parses");
    assert_eq!(parsed.rows.len(), report.rows.len());
    assert!(!parsed.qemu.is_empty() && !parsed.commit.is_empty() && !parsed.accelerator.is_empty());

    let markdown = std::fs::read_to_string(settings.out.join("report.md")).unwrap();
    assert!(markdown.contains("| benchmark | measure | ours | Linux guest | ours ÷ Linux |"));
    assert_eq!(
        markdown
            .lines()
            .filter(|line| line.starts_with("| ") && !line.starts_with("| benchmark"))
            .count(),
        report.rows.len()
    );

    let svg = std::fs::read_to_string(settings.out.join("report.svg")).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("report.svg is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let bars = document
        .descendants()
        .filter(|node| node.has_tag_name("rect"))
        .count();
    // Background, two legend swatches, two bars per compared row.
    assert_eq!(
        bars,
        3 + 2 * report.rows.iter().filter(|row| row.peer.is_some()).count()
    );
}

#[test]
fn the_linux_peer_serves_its_page_with_nginx() {
    let output = xtask::bench::peer_nginx_serves().expect("the peer boots");
    println!("{}", output.serial);
    assert!(
        output.ready_after.is_some(),
        "nginx did not serve inside the Linux guest"
    );
    let page = String::from_utf8(xtask::bench::peer::served_page()).unwrap();
    assert_eq!(page.len(), 612);
    // The guest's console turns "\n" into "\r\n".
    let serial = output.serial.replace("\r\n", "\n");
    assert!(
        serial.contains(page.trim_end()),
        "the guest did not print the served page"
    );
}
