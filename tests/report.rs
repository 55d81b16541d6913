//! Reports: the report of a small real study (a grid of cells, a diverged cell, a failed
//! cell, a Muennighoff fit with a bootstrap and a prediction) has the expected sections and
//! one SVG per expected plot, marks the failed and diverged cells, references nothing on
//! the network, travels in the study's exported bundle, and renders in headless Chromium
//! (Debian's `chromium`, installed by `tools/chromium.sh`) with no console message from the
//! bundle copied to another directory; bad `report` requests are clear errors.
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/mod.rs"]
mod support;
use support::*;

const STUDY: &str = r#"
let base = #{ name: "r", corpus: "data:corpora/quotes.jsonl", val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 1, lr: 3e-3, seed: 0 };
let runs = train(sweep(base, grid(#{ model: ["micro", #{ n_layer: 1, d_model: 32, n_head: 2 }], unique_tokens: [2_000, 4_000], epochs: [1, 3] })));
// Two more cells whose results the script does not read: one diverges, one will fail.
let odd = train(sweep(#{ name: "odd", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 2,
                         val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 4 }, zip(#{ lr: [1e6, 2e-3] })));
let rows = [];
for r in runs {
    let seen = if r.unique_tokens < r.train_tokens { r.unique_tokens } else { r.train_tokens };
    rows.push(#{ N: r.params, D: r.train_tokens, U: seen, loss: r.final_val_loss });
}
let f = fit(#{ law: "muennighoff", runs: rows, columns: "N=N,D=D,U=U,loss=loss", starts: 200, bootstrap: 20, seed: 1,
               predict: [#{ N: runs[-1].params, D: 40_000.0, U: 4_000.0 }] });
print(`fit ${f.n_points}`);
report(#{ out: "report", title: "report test" });
"#;

fn chromium() -> PathBuf {
    let out = Command::new("bash").arg(repo_root().join("tools/chromium.sh")).output().expect("running tools/chromium.sh");
    assert!(out.status.success(), "tools/chromium.sh failed (the report test needs Debian's chromium):\n{}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Headless Chromium on `page` with no network (every connection goes to a closed proxy)
/// and an empty profile; returns (stderr, stdout).
fn headless(browser: &Path, profile: &Path, page: &Path, extra: &[&str]) -> (String, String) {
    let url = format!("file://{}", page.display());
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"])
        .arg("--proxy-server=127.0.0.1:9")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(out.status.success(), "chromium failed on {url}:\n{}", text(&out));
    (String::from_utf8_lossy(&out.stderr).to_string(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn a_real_study_with_a_failed_and_a_diverged_cell_reports_and_renders_in_headless_chromium() {
    let browser = chromium();
    let s = Scratch::new("report");
    let script = s.write("s.rhai", STUDY).to_str().unwrap().to_string();
    // Leave every cell with a checkpoint, then break the one that must fail.
    let out = dctk(s.path(), &["run", &script, "-j", "2", "--threads", "2", "--stop-after-steps", "3", "-q"]);
    assert!(!out.status.success());
    let runs = s.path().join("runs");
    let broken = cells(&runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.json")).unwrap().contains("\"odd/lr=0.002\"")).unwrap();
    std::fs::write(broken.join("ckpt/state.ron"), "not ron").unwrap();
    let out = dctk(s.path(), &["run", &script, "-j", "2", "--threads", "2", "-q"]);
    let t = text(&out);
    // The failed cell fails the run; the final pass completed, so its report was written.
    assert!(!out.status.success() && t.contains("odd/lr=0.002"), "{t}");
    assert!(t.contains("report: ") && t.contains("report.html"), "{t}");
    let page = s.path().join("report/report.html");
    let html = std::fs::read_to_string(&page).unwrap();

    for section in ["study", "curves", "fits", "data-constrained", "results", "output"] {
        assert!(html.contains(&format!("data-section=\"{section}\"")), "section {section} missing");
    }
    // One SVG per plot, and the plots a grid with a fit of Muennighoff's law must have.
    let figures = html.matches("<figure class=\"plot\"").count();
    assert_eq!(figures, html.matches("<svg").count(), "one SVG per figure");
    for plot in
        ["val_loss_by_epochs", "val_loss_by_model", "val_loss_by_unique_tokens", "train_loss", "learning_rate", "fit1_fit", "fit1_residuals", "fit1_iso_loss", "fit1_epochs", "loss_vs_epochs"]
    {
        assert!(html.contains(&format!("data-plot=\"{plot}\"")), "plot {plot} missing");
    }
    // Failed and diverged cells are marked, with why.
    assert!(html.contains("data-status=\"failed\"") && html.contains("data-status=\"diverged\"") && html.contains("data-status=\"done\""));
    let row = |class: &str| html.split("<tr class=\"").find(|r| r.starts_with(class)).map(|r| r.split("</tr>").next().unwrap().to_string());
    let failed = row("st-failed").expect("a failed row");
    assert!(failed.contains("odd/lr=0.002") && failed.contains("state.ron"), "{failed}");
    let diverged = row("st-diverged").expect("a diverged row");
    assert!(diverged.contains("odd/lr=1000000") && diverged.contains("diverged at step"), "{diverged}");
    // The fit: its bootstrap band, its prediction marked as extrapolation, its parameters.
    assert!(html.contains("95% bootstrap band") && html.contains("predicted (extrapolation)") && html.contains("rd_star"));
    // Self-contained: nothing fetched from anywhere.
    for needle in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(needle), "the page references {needle}");
    }

    // `dctk report` writes the same page anywhere.
    let out = dctk(s.path(), &["report", &script, "--out", "elsewhere/r.html"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(s.path().join("elsewhere/r.html")).unwrap().matches("<svg").count(), figures);
    // An exported bundle carries the report; the bundle copied to another directory opens
    // in the browser: no console message (errors, failed loads), the page's script ran to
    // its end, a screenshot is taken.
    let out = dctk(s.path(), &["export", &script, "--out", "bundle"]);
    assert!(out.status.success(), "{}", text(&out));
    let other = Scratch::new("report-copy");
    let copied = other.path().join("their-lab");
    std::fs::create_dir_all(&copied).unwrap();
    for entry in std::fs::read_dir(s.path().join("bundle")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copied.join(entry.file_name())).unwrap();
        }
    }
    let copy = copied.join("report.html");
    assert!(std::fs::read_to_string(copied.join("README.md")).unwrap().contains("report.html"));
    let profile = other.path().join("profile");
    let (log, dom) = headless(&browser, &profile, &copy, &["--dump-dom"]);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
    assert_eq!(dom.matches("<svg").count(), figures, "every plot is in the rendered page");
    let shot = other.path().join("shot.png");
    let (log, _) = headless(&browser, &profile, &copy, &["--window-size=1400,3000", &format!("--screenshot={}", shot.display())]);
    assert!(!log.contains(":CONSOLE"), "{log}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot of {} bytes", png.len());
}

#[test]
fn report_requests_and_studies_without_a_record_are_clear_errors() {
    let s = Scratch::new("report-errors");
    let bad = s.write("bad.rhai", "report(#{ outt: \"x\" });\n").to_str().unwrap().to_string();
    let t = text(&dctk(s.path(), &["plan", &bad]));
    assert!(t.contains("bad.rhai:1:") && t.contains("unknown key \"outt\""), "{t}");
    let outside = s.write("outside.rhai", "report(#{ out: \"/etc/dctk-report\" });\n").to_str().unwrap().to_string();
    let t = text(&dctk(s.path(), &["plan", &outside]));
    assert!(t.contains("outside the study directory"), "{t}");
    let never = s.write("never.rhai", "print(1);\n").to_str().unwrap().to_string();
    let out = dctk(s.path(), &["report", &never]);
    assert!(!out.status.success() && text(&out).contains("no study record here"), "{}", text(&out));
}
