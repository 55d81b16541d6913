//! Studies as cells: a sweep killed (SIGKILL) at random moments and rerun gives the
//! bitwise-same results table as an uninterrupted run and never recomputes a finished
//! cell; two `dctk run` at once never run one cell twice; one changed setting changes
//! exactly one id and `dctk plan` says why; failed cells, keep-going and rerun-failed;
//! `print` output shown as the study runs and kept in the study record.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// Four small cells of different lengths (so kills land in different cells and rounds),
/// then a table that reads them all (a barrier), then a second round of one more cell
/// planned from the first round's results.
const SWEEP: &str = r#"
let base = #{ name: "k", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000,
              val_tokens: 256, seq_len: 32, batch_size: 8, lr: 3e-3, evals_per_epoch: 2, seed: 1 };
let runs = train(sweep(base, zip(#{ epochs: [1, 2, 3, 4], weight_decay: [0.0, 0.1, 0.4, 0.8] })));
print(table(runs, ["label", "steps", "final_val_loss"]));
let best = runs[0];
for r in runs { if r.final_val_loss < best.final_val_loss { best = r; } }
let more = base;
more.name = "k/followup";
more.epochs = 2;
more.weight_decay = best.epochs * 0.1;
let f = train(more);
print(`followup ${f.final_val_loss}`);
"#;

fn write_study(s: &Scratch) -> String {
    s.write("sweep.rhai", SWEEP).to_str().unwrap().to_string()
}

fn run_args<'a>(script: &'a str, runs: &'a str) -> Vec<&'a str> {
    vec!["run", script, "--runs", runs, "-q", "-j", "2", "--threads", "2"]
}

/// The results table of the study (runs/studies/<study>/results.csv).
fn results(runs: &Path) -> String {
    let studies: Vec<PathBuf> = std::fs::read_dir(runs.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(studies.len(), 1, "{studies:?}");
    std::fs::read_to_string(studies[0].join("results.csv")).unwrap()
}

/// Finished cells: id → (result.ron modification time, its bytes).
fn finished(runs: &Path) -> BTreeMap<String, (SystemTime, String)> {
    if !runs.exists() {
        return BTreeMap::new();
    }
    cells(runs)
        .into_iter()
        .filter(|d| std::fs::read_to_string(d.join("status")).is_ok_and(|s| s.trim() == "done"))
        .map(|d| {
            let r = d.join("result.ron");
            let id = d.file_name().unwrap().to_string_lossy().to_string();
            (id, (std::fs::metadata(&r).unwrap().modified().unwrap(), std::fs::read_to_string(&r).unwrap()))
        })
        .collect()
}

/// A small deterministic pseudo-random sequence (xorshift), for kill times.
fn kill_times(n: usize, max_ms: u64) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            150 + x % max_ms
        })
        .collect()
}

#[test]
fn sigkilled_sweep_reruns_to_the_same_table_without_recomputing_finished_cells() {
    let s = Scratch::new("killsweep");
    let script = write_study(&s);

    // The reference: one uninterrupted run.
    let t0 = Instant::now();
    let out = dctk(s.path(), &run_args(&script, "straight"));
    assert!(out.status.success(), "{}", text(&out));
    let straight_ms = t0.elapsed().as_millis() as u64;
    let reference = results(&s.path().join("straight"));
    assert_eq!(reference.lines().count(), 6, "4 sweep cells + the follow-up:\n{reference}");
    assert!(text(&out).contains("followup "), "{}", text(&out));

    // Ten SIGKILLs at pseudo-random moments, each followed by a rerun that is killed too.
    let killed = s.path().join("killed");
    let mut seen_done = finished(&killed);
    let mut kills_before_done = 0;
    // Delays of 0.15–1.2 s: each rerun gets a little further (the sweep takes several
    // seconds), so the kills land before, between and inside cells and script rounds.
    for (i, ms) in kill_times(10, 1050).into_iter().enumerate() {
        let mut child = dctk_cmd(s.path()).args(run_args(&script, "killed")).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut exited = false;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !exited {
            child.kill().unwrap(); // SIGKILL
            kills_before_done += 1;
        }
        child.wait().unwrap();
        // Every cell finished before this kill is untouched: same file, same time.
        let now_done = finished(&killed);
        for (id, before) in &seen_done {
            assert_eq!(now_done.get(id), Some(before), "kill {i}: finished cell {id} was recomputed or changed");
        }
        seen_done = now_done;
    }
    assert!(kills_before_done >= 7, "kills should interrupt the study ({kills_before_done} of 10 did; the sweep took {straight_ms} ms)");

    // Finish it; the table is the uninterrupted one, byte for byte (floats round-trip).
    let out = dctk(s.path(), &run_args(&script, "killed"));
    assert!(out.status.success(), "{}", text(&out));
    for (id, before) in &seen_done {
        assert_eq!(finished(&killed).get(id), Some(before), "finished cell {id} was recomputed by the last run");
    }
    assert_eq!(results(&killed), reference, "results differ from the uninterrupted run");
    // And so are the logged losses of every cell.
    for dir in cells(&s.path().join("straight")) {
        let other = killed.join(dir.file_name().unwrap());
        let pick = |d: &Path| -> Vec<(u64, f64)> {
            metrics(d).iter().filter(|r| r["kind"] == "train").map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap())).collect()
        };
        assert_eq!(pick(&dir), pick(&other), "cell {} logged different losses", dir.display());
    }
}

#[test]
fn two_concurrent_runs_never_run_one_cell_twice() {
    let s = Scratch::new("twoproc");
    let script = write_study(&s);
    let a = dctk_cmd(s.path())
        .args(run_args(&script, "runs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = dctk_cmd(s.path()).args(run_args(&script, "runs")).output().unwrap();
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let runs = s.path().join("runs");
    assert_eq!(cells(&runs).len(), 5);
    // Each says what it ran itself: together, every cell exactly once.
    let run_now = |t: &str| -> usize {
        let line = t.lines().find(|l| l.contains(" run now")).unwrap_or_else(|| panic!("no summary:\n{t}"));
        line.split(" run now").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (ta, tb) = (text(&a), text(&b));
    assert_eq!(run_now(&ta) + run_now(&tb), 5, "each cell was run by one of them:\n{ta}\n{tb}");
    for dir in cells(&runs) {
        // One training pass per cell: every step logged once, one process started it.
        let steps: Vec<u64> = metrics(&dir).iter().filter(|r| r["kind"] == "train").map(|r| r["step"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=steps.len() as u64).collect();
        assert_eq!(steps, expected, "cell {} was trained more than once", dir.display());
        let result = std::fs::read_to_string(dir.join("result.ron")).unwrap();
        assert!(result.contains("resumed_from_step: None"), "cell {} was resumed mid-way:\n{result}", dir.display());
    }
}

const NAMED: &str = r#"
let base = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8 };
let a = base; a.name = "a"; a.lr = 0.003;
let b = base; b.name = "b"; b.lr = 0.003; b.weight_decay = 0.5;
let c = base; c.name = "c"; c.lr = 0.001;
let runs = train([a, b, c]);
"#;

/// (label, id) of each line of a plan.
fn plan_ids(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter(|l| l.starts_with("new ") || l.starts_with("done "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.last().unwrap().to_string(), f[1].to_string())
        })
        .collect()
}

#[test]
fn one_changed_setting_changes_one_id_and_plan_says_why() {
    let s = Scratch::new("planwhy");
    let script = s.write("named.rhai", NAMED).to_str().unwrap().to_string();
    let out = dctk(s.path(), &["plan", &script]);
    assert!(out.status.success(), "{}", text(&out));
    let before = plan_ids(&text(&out));
    assert_eq!(before.len(), 3, "{}", text(&out));
    assert!(text(&out).contains("3 new"), "{}", text(&out));

    s.write("named.rhai", &NAMED.replace("b.weight_decay = 0.5", "b.weight_decay = 0.25"));
    let out = dctk(s.path(), &["plan", &script]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let after = plan_ids(&t);
    assert_eq!(before["a"], after["a"]);
    assert_eq!(before["c"], after["c"]);
    assert_ne!(before["b"], after["b"]);
    assert!(t.contains(&format!("b: {} → {}", before["b"], after["b"])), "{t}");
    assert!(t.contains("spec.weight_decay: 0.5 → 0.25"), "{t}");
    // Exactly one input changed.
    let why: Vec<&str> = t.lines().skip_while(|l| !l.starts_with("ids changed")).skip(1).collect();
    assert_eq!(why.len(), 2, "one cell, one changed input:\n{t}");

    // A label or thread count is not an input: renaming keeps the id.
    s.write("named.rhai", &NAMED.replace("c.name = \"c\"", "c.name = \"renamed\"; c.threads = 3"));
    let t = text(&dctk(s.path(), &["plan", &script]));
    assert_eq!(plan_ids(&t)["renamed"], before["c"], "{t}");
}

const FAILING: &str = r#"print("planned");
let base = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 4 };
let a = base; a.name = "a";
let b = base; b.name = "b"; b.seed = 2;
let runs = train([a, b]);
print(`steps ${runs[0].steps} ${runs[1].steps}`);
"#;

#[test]
fn a_failed_cell_is_reported_the_others_finish_and_rerun_failed_retries_it() {
    let s = Scratch::new("failing");
    let script = s.write("f.rhai", FAILING).to_str().unwrap().to_string();
    // Leave both cells with a checkpoint, then break one checkpoint.
    let out = dctk(s.path(), &["run", &script, "-q", "--stop-after-steps", "6"]);
    assert!(!out.status.success());
    // What the script printed before its barrier was shown as the study ran, and the study
    // record keeps it, though the study stopped with its cells unfinished.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "planned\n");
    let studies = s.path().join("runs/studies");
    let record = std::fs::read_dir(&studies).unwrap().next().unwrap().unwrap().path().join("output.txt");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "planned\n");
    let runs = s.path().join("runs");
    let broken = cells(&runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.ron")).unwrap().contains("label: \"b\"")).unwrap();
    std::fs::write(broken.join("ckpt/state.ron"), "not ron").unwrap();

    // Keep going (the default): a finishes, b fails; the script's read of b is a positioned error.
    let out = dctk(s.path(), &["run", &script, "-q"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("cell b (") && t.contains("failed"), "{t}");
    assert!(t.contains("f.rhai:6:"), "the error points at the read of the failed cell:\n{t}");
    assert_eq!(std::fs::read_to_string(broken.join("status")).unwrap().trim(), "failed");
    assert!(std::fs::read_to_string(broken.join("error.txt")).unwrap().contains("state.ron"));
    let done: Vec<PathBuf> = cells(&runs).into_iter().filter(|d| std::fs::read_to_string(d.join("status")).unwrap().trim() == "done").collect();
    assert_eq!(done.len(), 1, "the other cell finished");

    // `dctk plan` shows the failed cell with its error instead of stopping at it.
    let t = text(&dctk(s.path(), &["plan", &script]));
    assert!(t.contains("failed ") && t.contains("error: "), "{t}");

    // Without --rerun-failed, a rerun does not retry it; with it, the cell runs again.
    let t = text(&dctk(s.path(), &["run", &script, "-q"]));
    assert!(t.contains("--rerun-failed"), "{t}");
    std::fs::remove_dir_all(broken.join("ckpt")).unwrap();
    let out = dctk(s.path(), &["run", &script, "-q", "--rerun-failed"]);
    assert!(out.status.success(), "{}", text(&out));
    // Each line once, in the final pass's order, though the script ran in several passes.
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.starts_with("planned\nsteps ") && stdout.matches("planned").count() == 1, "{stdout}");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), stdout);
}

#[test]
fn sigint_checkpoints_running_cells_and_the_resumed_study_matches() {
    let s = Scratch::new("sigint");
    let script = s
        .write(
            "c.rhai",
            r#"
let base = #{ name: "c", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 6_000, val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 1 };
let runs = train(sweep(base, zip(#{ epochs: [6, 7] })));
print(table(runs, ["label", "final_val_loss"]));
"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    let out = dctk(s.path(), &run_args(&script, "straight"));
    assert!(out.status.success(), "{}", text(&out));

    let child = dctk_cmd(s.path())
        .args(run_args(&script, "runs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runs = s.path().join("runs");
    // Wait until both cells have trained a few steps, then Ctrl-C (SIGINT to dctk run only).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps: usize = if runs.exists() {
            cells(&runs).iter().map(|d| std::fs::read_to_string(d.join("metrics.jsonl")).map_or(0, |m| m.matches("\"train\"").count())).min().unwrap_or(0)
        } else {
            0
        };
        if steps >= 3 && cells(&runs).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the cells did not start in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success() && t.contains("run the study again to resume"), "{t}");
    for d in cells(&runs) {
        // Every step trained before the signal is in the checkpoint: nothing lost.
        let logged = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap().matches("\"train\"").count();
        let state = std::fs::read_to_string(d.join("ckpt/state.ron")).unwrap();
        assert!(state.contains(&format!("step: {logged},")), "cell {} logged {logged} steps, checkpoint:\n{state}", d.display());
    }
    let out = dctk(s.path(), &run_args(&script, "runs"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(results(&runs), results(&s.path().join("straight")), "a cancelled and resumed study differs");
}

#[test]
fn a_diverged_cell_is_marked_and_the_study_goes_on() {
    let s = Scratch::new("diverged");
    let script = s
        .write(
            "d.rhai",
            r#"
let base = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8 };
let runs = train(sweep(base, zip(#{ lr: [1e6, 3e-3] })));
print(`statuses ${runs[0].status} ${runs[1].status}`);
print(`finite ${runs[1].final_val_loss < 20.0}`);
"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    let out = dctk(s.path(), &["run", &script, "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("statuses diverged done"), "{t}");
    assert!(t.contains("finite true"), "{t}");
    let statuses: Vec<String> = cells(&s.path().join("runs")).iter().map(|d| std::fs::read_to_string(d.join("status")).unwrap().trim().to_string()).collect();
    assert!(statuses.contains(&"diverged".to_string()) && statuses.contains(&"done".to_string()), "{statuses:?}");
}

/// Pids of the `dctk cell exec` processes running in `dir`.
fn cell_processes(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            (cmd.contains("cell exec") && cwd == dir).then_some(pid)
        })
        .collect()
}

#[test]
fn a_crashed_cell_process_is_reported_not_relaunched_and_resumes_next_time() {
    let s = Scratch::new("crash");
    let script = s
        .write(
            "c.rhai",
            r#"
let r = train(#{ name: "c", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 4_000, epochs: 3,
                 val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 4 });
print(`loss ${r.final_val_loss}`);
"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    let child = dctk_cmd(s.path())
        .args(["run", &script, "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a checkpoint, then kill the cell process (as a segfault or the OOM killer would).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = s.path().join("runs");
        if runs.exists() && cells(&runs).iter().any(|d| d.join("ckpt/state.ron").exists()) {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = cell_processes(s.path());
    assert_eq!(pids.len(), 1, "{pids:?}");
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("killed by a signal") && t.contains("c.rhai:4:"), "{t}");
    // It names the signal, and does not send the user to --rerun-failed: a plain rerun resumes it.
    assert!(t.contains("killed by a signal (SIGKILL)") && t.contains("a plain rerun resumes it"), "{t}");
    assert!(!t.contains("--rerun-failed"), "{t}");
    // Not failed on disk (the process never said so): the next run resumes it.
    let out = dctk(s.path(), &["run", &script, "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let result = std::fs::read_to_string(only_run(&s.path().join("runs")).join("result.ron")).unwrap();
    assert!(result.contains("resumed_from_step: Some("), "{result}");
}

/// The one cell directory under `runs` (the per-study records live in `runs/studies`).
fn the_cell(runs: &Path) -> PathBuf {
    let c = cells(runs);
    assert_eq!(c.len(), 1, "{c:?}");
    c[0].clone()
}

/// The `blake3` line of `dctk plugins info NAME` under the given plugin path.
fn plugin_hash(dir: &Path, plugin_path: &Path, name: &str) -> String {
    let out = dctk_cmd(dir).args(["plugins", "info", name]).env("DCTK_PLUGIN_PATH", plugin_path).output().unwrap();
    let t = text(&out);
    t.lines().find_map(|l| l.strip_prefix("blake3")).unwrap_or_else(|| panic!("no blake3 line:\n{t}")).trim().to_string()
}

#[test]
fn a_cell_executed_with_another_plugin_build_is_refused_naming_both_hashes() {
    let s = Scratch::new("plugin-contract");
    let plugins = s.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = plugins.join("libdctk_plugin_mir.so");
    std::fs::copy(dctk_bin().parent().unwrap().join("libdctk_plugin_mir.so"), &lib).expect("build the workspace first");
    let script = s
        .write(
            "p.rhai",
            r#"train(#{ name: "m", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000,
               val_tokens: 256, seq_len: 32, batch_size: 8, epochs: 1, seed: 1, regularizers: ["mir"] });"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    let planned = plugin_hash(s.path(), &plugins, "mir");
    let out = dctk_cmd(s.path()).args(["run", &script, "-q", "--threads", "1", "--stop-after-steps", "1"]).env("DCTK_PLUGIN_PATH", &plugins).output().unwrap();
    assert!(!out.status.success(), "stopped after one step: {}", text(&out));
    let cell = the_cell(&s.path().join("runs"));
    // "Rebuild" the plugin: same name and version, other bytes.
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&lib, bytes).unwrap();
    let here = plugin_hash(s.path(), &plugins, "mir");
    assert_ne!(planned, here);
    let out = dctk_cmd(s.path()).args(["cell", "exec", cell.to_str().unwrap(), "-q"]).env("DCTK_PLUGIN_PATH", &plugins).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("plugin.mir.blake3: {planned} (planned) → {here} (here)")), "{t}");
    assert!(std::fs::read_to_string(cell.join("error.txt")).unwrap().contains("plugin.mir.blake3"));
    assert!(!std::fs::read_to_string(cell.join("metrics.jsonl")).unwrap_or_default().lines().any(|l| l.contains("\"step\":2")), "no step was trained");
}

#[test]
fn absurd_threads_are_refused_at_plan_and_threads_are_not_frozen_into_manifests() {
    let s = Scratch::new("threads-contract");
    let body = |threads: &str| {
        format!(
            r#"train(#{{ name: "t", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000,
               val_tokens: 256, seq_len: 32, batch_size: 8, epochs: 1, seed: 1, threads: {threads} }});"#
        )
    };
    let script = s.write("t.rhai", &body("1000000")).to_str().unwrap().to_string();
    for cmd in ["plan", "run"] {
        let out = dctk(s.path(), &[cmd, &script, "-q"][..if cmd == "plan" { 2 } else { 3 }]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {t}");
        assert!(t.contains("t.rhai:1:") && t.contains("key \"threads\": 1000000"), "{cmd}: {t}");
    }
    assert!(!s.path().join("runs").exists() || cells(&s.path().join("runs")).is_empty(), "nothing planned to disk");
    // A sane setting: the cell runs, and its manifest does not carry it for later studies.
    s.write("t.rhai", &body("2"));
    let out = dctk(s.path(), &["run", &script, "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let cell = the_cell(&s.path().join("runs"));
    let manifest = std::fs::read_to_string(cell.join("manifest.ron")).unwrap();
    assert!(manifest.contains("threads: None"), "{manifest}");
    let result = std::fs::read_to_string(cell.join("result.ron")).unwrap();
    assert!(result.contains("threads: 2"), "the study's setting still applied: {result}");
}

/// Makes the study's finished cell look like a result of another build: its directory
/// moves to `fake_id` and the last plan record says that cell had another build id.
fn pretend_other_build(runs: &Path, id: &str, fake_id: &str) {
    std::fs::rename(runs.join(id), runs.join(fake_id)).unwrap();
    let studies: Vec<PathBuf> = std::fs::read_dir(runs.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    let plan = studies[0].join("plan.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    record["common"]["version.build"] = "0123456789abcdef".into();
    record["cells"][0]["id"] = fake_id.into();
    std::fs::write(&plan, serde_json::to_vec(&record).unwrap()).unwrap();
}

#[test]
fn results_of_another_build_are_never_reused_silently_and_accepted_only_on_request() {
    let s = Scratch::new("build-id");
    let script = s
        .write(
            "b.rhai",
            r#"let r = train(#{ name: "c", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000,
               val_tokens: 256, seq_len: 32, batch_size: 8, epochs: 1, seed: 1 });
print(`loss ${r.final_val_loss}`);"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    let runs = s.path().join("runs");
    let out = dctk(s.path(), &["run", &script, "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = the_cell(&runs).file_name().unwrap().to_string_lossy().to_string();
    let v = text(&dctk(s.path(), &["--version"]));
    let build = v.split("build ").nth(1).unwrap().split(',').next().unwrap().to_string();
    assert_eq!(build.len(), 16, "{v}");

    // Another build's result: plan says so and names the cell; a plain run recomputes it.
    pretend_other_build(&runs, &id, "00000000000000aa");
    let t = text(&dctk(s.path(), &["plan", &script]));
    assert!(t.contains(&format!("(dctk build {build})")), "{t}");
    assert!(t.contains("1 cell(s) have finished results of another build") && t.contains(&format!("c (00000000000000aa → {id}): version.build: 0123456789abcdef → {build}")), "{t}");
    let out = dctk(s.path(), &["run", &script, "-q", "--threads", "1"]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("they run again unless you accept") && t.contains("1 run now"), "{t}");

    // With the flag: reused, recorded in the manifest, nothing trained.
    pretend_other_build(&runs, &id, "00000000000000bb");
    let before = std::fs::read_to_string(runs.join("00000000000000bb/metrics.jsonl")).unwrap();
    let out = dctk(s.path(), &["run", &script, "-q", "--threads", "1", "--accept-code-change"]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("--accept-code-change: reused 1 result(s) of another build") && t.contains("0 run now"), "{t}");
    let cell = runs.join(&id);
    let manifest = std::fs::read_to_string(cell.join("manifest.ron")).unwrap();
    assert!(manifest.contains("accepted_code_change: Some") && manifest.contains("from_id: \"00000000000000bb\""), "{manifest}");
    assert_eq!(std::fs::read_to_string(cell.join("metrics.jsonl")).unwrap(), before);
    assert!(std::fs::read_to_string(cell.join("result.ron")).unwrap().contains(&format!("run_id: \"{id}\"")));
}

#[test]
fn a_full_disk_shows_the_cells_own_error_not_an_exit_code() {
    let s = Scratch::new("fulldisk");
    let script = s
        .write(
            "d.rhai",
            r#"train(#{ name: "d", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000,
               val_tokens: 256, seq_len: 32, batch_size: 8, epochs: 1, seed: 1 });"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    // Plan the cell and leave it resumable, then rerun with no file allowed to grow (as on a
    // full disk: every write to a file fails, log.txt included; SIGXFSZ ignored so writes
    // fail with an error instead of killing the process).
    let out = dctk(s.path(), &["run", &script, "-q", "--threads", "1", "--stop-after-steps", "1"]);
    assert!(!out.status.success());
    let cmd = format!("trap '' XFSZ; ulimit -f 0; exec '{}' run '{script}' -q --threads 1", dctk_bin().display());
    let out = Command::new("bash").arg("-c").arg(&cmd).current_dir(s.path()).env("DCTK_DATA_ROOTS", repo_root().join("data")).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("exited with code") && !t.contains("panicked"), "{t}");
    assert!(t.contains("cell d (") && t.contains("File too large"), "the cell's own error reaches the terminal:\n{t}");
}

#[test]
fn a_study_with_a_failed_cell_still_writes_its_results_table() {
    let s = Scratch::new("failed-table");
    let script = s.write("f.rhai", FAILING).to_str().unwrap().to_string();
    let out = dctk(s.path(), &["run", &script, "-q", "--stop-after-steps", "6"]);
    assert!(!out.status.success());
    // What the script printed before its barrier was shown as the study ran, and the study
    // record keeps it, though the study stopped with its cells unfinished.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "planned\n");
    let studies = s.path().join("runs/studies");
    let record = std::fs::read_dir(&studies).unwrap().next().unwrap().unwrap().path().join("output.txt");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "planned\n");
    let runs = s.path().join("runs");
    let broken = cells(&runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.ron")).unwrap().contains("label: \"b\"")).unwrap();
    std::fs::write(broken.join("ckpt/state.ron"), "not ron").unwrap();
    let out = dctk(s.path(), &["run", &script, "-q"]);
    assert!(!out.status.success(), "{}", text(&out));
    let table = results(&runs);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "header and both cells:\n{table}");
    assert!(rows[0].starts_with("label,id,status,"), "{table}");
    assert!(rows.iter().any(|r| r.starts_with("a,") && r.contains(",done,")), "{table}");
    assert!(rows.iter().any(|r| r.starts_with("b,") && r.contains(",failed,")), "{table}");
}

const TWO: &str = r#"
let base = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 4 };
let a = base; a.name = "a"; a.weight_decay = 0.1; a.lr = 0.003;
let b = base; b.name = "b"; b.weight_decay = 0.2; b.lr = 0.001;
let runs = train([a, b]);
"#;

#[test]
fn results_name_varying_settings_records_have_json_twins_and_gc_prunes_only_finished_checkpoints() {
    let s = Scratch::new("outputs");
    let both = s.write("two.rhai", TWO).to_str().unwrap().to_string();
    let runs = s.path().join("runs");
    // Both cells checkpointed and unfinished; then finish only a (same settings, same id).
    let out = dctk(s.path(), &["run", &both, "-q", "--threads", "1", "--stop-after-steps", "6"]);
    assert!(!out.status.success());
    let only_a = s.write("a.rhai", &TWO.replace("train([a, b])", "train([a])")).to_str().unwrap().to_string();
    let out = dctk(s.path(), &["run", &only_a, "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let cell = |label: &str| cells(&runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.ron")).unwrap().contains(&format!("label: \"{label}\""))).unwrap();
    let (a, b) = (cell("a"), cell("b"));

    // JSON twins of the records, readable without RON.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("result.json")).unwrap()).unwrap();
    assert_eq!(manifest["label"], "a");
    assert_eq!(manifest["run_id"], result["run_id"]);
    assert!(result["final_val_loss"].as_f64().unwrap() > 0.0, "{result}");

    // The table of the two-cell study names what varies.
    let t = text(&dctk(s.path(), &["plan", &both]));
    assert!(t.contains("1 done") && t.contains("1 interrupted"), "{t}");
    let out = dctk(s.path(), &["run", &both, "-q", "--threads", "1", "--stop-after-steps", "1"]);
    assert!(!out.status.success());
    let studies: Vec<PathBuf> = std::fs::read_dir(runs.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    let table = studies.iter().map(|d| std::fs::read_to_string(d.join("results.csv")).unwrap_or_default()).find(|t| t.lines().count() == 3).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}: {header:?}"));
    let row = |label: &str| -> Vec<String> { table.lines().find(|l| l.starts_with(&format!("{label},"))).unwrap().split(',').map(String::from).collect() };
    assert_eq!(row("a")[col("weight_decay")], "0.1");
    assert_eq!(row("b")[col("weight_decay")], "0.2");
    assert_eq!(row("b")[col("lr")], "0.001");
    assert!(!header.contains(&"seq_len"), "settings that do not vary are not columns: {header:?}");

    // gc: the finished cell's checkpoint goes, the unfinished one's stays.
    assert!(a.join("ckpt").exists() || a.join("ckpt.old").exists(), "a kept its checkpoint until gc");
    let out = dctk(s.path(), &["gc"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("removed the checkpoints of 1 finished cell(s)") && !t.contains(": 0 bytes"), "{t}");
    assert!(!a.join("ckpt").exists() && !a.join("ckpt.old").exists());
    assert!(b.join("ckpt/state.ron").exists(), "an unfinished cell keeps its checkpoint");
    assert!(a.join("result.ron").exists() && a.join("metrics.jsonl").exists());
    let t = text(&dctk(s.path(), &["gc"]));
    assert!(t.contains("of 0 finished cell(s): 0 bytes"), "{t}");
}

#[test]
fn plan_diffs_against_the_last_run_names_the_data_setting_and_estimates_time_after_an_edit() {
    let s = Scratch::new("plan-after-edit");
    let body = |vf: &str, seed: u32| {
        format!(
            r#"train(#{{ name: "e", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000,
               val_tokens: 256, seq_len: 32, batch_size: 8, epochs: 1, seed: {seed}, val_fraction: {vf} }});"#
        )
    };
    let script = s.write("e.rhai", &body("0.05", 1)).to_str().unwrap().to_string();
    let out = dctk(s.path(), &["run", &script, "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let ran = plan_ids(&text(&dctk(s.path(), &["plan", &script])))["e"].clone();
    // An edit that is planned but never run does not become the reference.
    s.write("e.rhai", &body("0.05", 2));
    let t = text(&dctk(s.path(), &["plan", &script]));
    assert!(t.contains("ids changed since the last plan that was run") && t.contains("spec.seed: 1 → 2"), "{t}");
    s.write("e.rhai", &body("0.1", 1));
    let t = text(&dctk(s.path(), &["plan", &script]));
    assert!(t.contains(&format!("e: {ran} → ")), "diffed against the run plan, not the seed edit:\n{t}");
    assert!(!t.contains("spec.seed"), "{t}");
    assert!(t.contains("data.fingerprint: ") && t.contains("(the data changed with val_fraction: 0.05 → 0.1)"), "{t}");
    // No planned cell is finished, but the study's last run measured the throughput.
    assert!(t.contains("about ") && t.contains("measured on 1 finished cell(s) of this study's earlier plan"), "{t}");
}


#[test]
fn a_piped_run_prints_a_line_per_cell_event_and_status_lines_while_it_trains() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let s = Scratch::new("piped");
    let script = s
        .write(
            "p.rhai",
            r#"
let base = #{ name: "p", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 4_000, epochs: 3,
              val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 1 };
let runs = train(sweep(base, zip(#{ lr: [1e6, 3e-3] })));
"#,
        )
        .to_str()
        .unwrap()
        .to_string();
    // stderr is a pipe, not a terminal: no bars, lines.
    let mut child = dctk_cmd(s.path())
        .args(["run", &script, "-j", "1", "--threads", "1"])
        .env("DCTK_PROGRESS_INTERVAL_S", "0.2")
        .env_remove("DCTK_PROGRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let lines: Vec<(Duration, String)> =
        BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok).map(|l| (started.elapsed(), l)).collect();
    assert!(child.wait().unwrap().success());
    let all = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    let find = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|(_, l)| pred(l)).unwrap_or_else(|| panic!("missing line in:\n{all}"));
    let start_a = find(&|l: &str| l.starts_with("[1/2] start p/lr=") && l.contains('('));
    let diverged = find(&|l: &str| l.starts_with("[1/2] diverged p/lr="));
    let start_b = find(&|l: &str| l.starts_with("[2/2] start p/lr="));
    let eval = find(&|l: &str| l.contains(": step ") && l.contains(" val_loss "));
    // A status line of the running cell, part-way through: step, loss, tokens/s, ETA.
    let status = find(&|l: &str| {
        l.contains(": step ") && l.contains("tokens/s, ETA ") && {
            let frac = l.split(": step ").nth(1).unwrap().split(' ').next().unwrap();
            let (a, b) = frac.split_once('/').unwrap();
            a.parse::<u64>().unwrap() < b.parse::<u64>().unwrap()
        }
    });
    let done_b = find(&|l: &str| l.starts_with("[2/2] done p/lr=") && l.contains("final val_loss "));
    assert!(start_a < diverged && diverged < start_b && start_b < done_b, "{all}");
    assert!(eval < done_b && status < done_b, "{all}");
    assert!(all.contains("status: 1/2 cell(s) ended, 1 running"), "{all}");
    // The lines came while it trained, not all at the exit.
    assert!(lines[done_b].0 > lines[start_b].0 + Duration::from_millis(200), "{all}");
}

#[test]
fn plan_writes_manifests_that_cell_exec_runs_and_a_bad_dctk_ron_is_named() {
    let s = Scratch::new("manifests");
    let script = s
        .write("m.rhai", "train(#{ name: \"m\", model: \"micro\", corpus: \"data:corpora/quotes.jsonl\", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8 });\n")
        .to_str()
        .unwrap()
        .to_string();
    // `dctk plan --write-manifests`: the pending cell's manifest, and the command that runs it.
    let out = dctk(s.path(), &["plan", &script, "--write-manifests"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let cell = only_run(&s.path().join("runs"));
    assert!(cell.join("manifest.ron").is_file() && !cell.join("status").exists(), "{t}");
    assert!(t.contains(&format!("dctk cell exec runs/{}", cell.file_name().unwrap().to_string_lossy())), "{t}");
    let out = dctk(s.path(), &["cell", "exec", cell.to_str().unwrap(), "--threads", "1", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(cell.join("status")).unwrap().trim(), "done");
    // `dctk status` reads it back from the files.
    let t = text(&dctk(s.path(), &["status", &script]));
    assert!(t.contains("1 cell(s): 1 done"), "{t}");
    // A misspelt key in dctk.ron beside the study stops `dctk run` before anything runs, naming it.
    s.write("dctk.ron", "(executor: \"slurm\", slurm: (partitio: \"gpu\"))");
    let out = dctk(s.path(), &["run", &script, "-q"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("dctk.ron:1:") && t.contains("partitio"), "{t}");
}
