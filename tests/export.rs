//! `dctk export` writes a bundle (scripts, imports, inputs, hashes, results) another lab can
//! rerun; planning or running the bundle says exactly which inputs differ from the bundle's.
use std::path::Path;

#[path = "support/mod.rs"]
mod support;
use support::*;

const STUDY: &str = r#"
import "lib/common" as common;
let a = common::base(); a.name = "a";
let b = common::base(); b.name = "b"; b.weight_decay = 0.5;
let runs = train([a, b]);
"#;

const COMMON: &str = r#"
fn base() {
    #{ model: "micro", corpus: "data:c/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8 }
}
"#;

fn data_root(s: &Scratch, name: &str, edit: bool) -> String {
    let text = std::fs::read_to_string(repo_root().join("data/corpora/quotes.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().take(400).map(String::from).collect();
    if edit {
        lines[3] = r#"{"text": "A different quotation changes the data, and every id that depends on it."}"#.into();
    }
    let dir = s.path().join(name).join("c");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("quotes.jsonl"), lines.join("\n") + "\n").unwrap();
    s.path().join(name).display().to_string()
}

#[test]
fn a_bundle_reruns_elsewhere_and_names_the_inputs_that_differ() {
    let s = Scratch::new("export");
    std::fs::create_dir_all(s.path().join("study/lib")).unwrap();
    std::fs::write(s.path().join("study/s.rhai"), STUDY).unwrap();
    std::fs::write(s.path().join("study/lib/common.rhai"), COMMON).unwrap();
    let same = data_root(&s, "d1", false);
    let other = data_root(&s, "d2", true);

    let out = dctk(s.path(), &["export", "study/s.rhai", "--out", "bundle", "--data-root", &same]);
    assert!(out.status.success(), "{}", text(&out));
    let bundle = s.path().join("bundle");
    for f in ["s.rhai", "lib/common.rhai", "bundle.ron", "results.csv", "README.md"] {
        assert!(bundle.join(f).is_file(), "bundle lacks {f}");
    }
    let record = std::fs::read_to_string(bundle.join("bundle.ron")).unwrap();
    assert!(record.contains("\"data.fingerprint\"") && record.contains("\"version.libtorch\""), "{record}");
    assert!(!Path::new(&s.path().join(".bundle.tmp")).exists());

    // An existing bundle is never overwritten.
    let out = dctk(s.path(), &["export", "study/s.rhai", "--out", "bundle", "--data-root", &same]);
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));

    // The same data: every cell matches the bundle.
    let out = dctk(s.path(), &["plan", "bundle/s.rhai", "--data-root", &same, "--runs", "elsewhere"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("all 2 cell(s) planned so far have the bundle's exact inputs"), "{}", text(&out));

    // Different data: each cell says its data fingerprint and the quotes domain differ.
    let out = dctk(s.path(), &["plan", "bundle/s.rhai", "--data-root", &other, "--runs", "elsewhere"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("cell a: inputs differ from the bundle") && t.contains("cell b: inputs differ from the bundle"), "{t}");
    assert!(t.contains("data.fingerprint: "), "{t}");
    assert!(t.contains("data domain quotes: "), "{t}");
    assert!(t.contains("2 cell(s) differ from the bundle"), "{t}");
}

/// Rerunning a bundle compares its numbers with the bundle's results, number by number: the
/// same machine gives every number bit for bit; a difference (here a bundle whose numbers
/// came from another machine) is reported as the largest relative difference, never implied
/// away.
#[test]
fn a_bundle_rerun_reports_how_its_numbers_compare() {
    let s = Scratch::new("export-rerun");
    std::fs::create_dir_all(s.path().join("study/lib")).unwrap();
    std::fs::write(s.path().join("study/s.rhai"), STUDY).unwrap();
    std::fs::write(s.path().join("study/lib/common.rhai"), COMMON).unwrap();
    let data = data_root(&s, "d", false);
    let out = dctk(s.path(), &["run", "study/s.rhai", "-q", "--data-root", &data, "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = dctk(s.path(), &["export", "study/s.rhai", "--out", "bundle", "--data-root", &data]);
    assert!(out.status.success(), "{}", text(&out));

    let out = dctk(s.path(), &["run", "bundle/s.rhai", "-q", "--data-root", &data, "--runs", "elsewhere", "--threads", "1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("numbers of 2 cell(s) equal the bundle's bit for bit"), "{t}");

    // The bundle's numbers from "another machine": one loss off in its 6th digit.
    let csv_path = s.path().join("bundle/results.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == "final_val_loss").unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
    let v: f64 = cells[col].parse().unwrap();
    cells[col] = (v * (1.0 + 2e-6)).to_string();
    lines[1] = cells.join(",");
    std::fs::write(&csv_path, lines.join("\n") + "\n").unwrap();
    let out = dctk(s.path(), &["run", "bundle/s.rhai", "-q", "--data-root", &data, "--runs", "elsewhere", "--threads", "1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("differ from the bundle's; largest relative difference 2.000e-6 (final_val_loss of"), "{t}");
}
