//! Benchmark: the 4,500-start Chinchilla fit on Epoch's 240 points, and
//! 4,000 seeded bootstrap refits. Prints the fit and timings (median of
//! `--repeat` runs, default 5). Run: `cargo run --release -p dctk-laws --example bench_fit -- PATH_TO_CSV`.

use dctk_laws::{builtin, fit, BootstrapOptions, ColumnMap, FitOptions, LawOptions, Points};
use std::time::Instant;

/// CPU seconds (user + system) this process has used, from /proc/self/stat
/// (Linux); reported beside wall time because a shared machine's load
/// inflates wall time but not CPU time. None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).cloned().unwrap_or_else(|| "core/laws/tests/data/chinchilla_epoch_svg_extracted.csv".into());
    let repeat: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let map = ColumnMap::parse("N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss")?;
    let all = Points::from_csv(&path, &map)?;
    // Epoch's default analysis: drop the 5 highest losses.
    let mut sorted = all.loss.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[4];
    let keep = all.indices_where(|_, y| y < cut);
    let points = all.select(&keep)?;
    let law = builtin("chinchilla", &LawOptions::default())?;
    let mut times = Vec::new();
    let mut last = None;
    let cpu0 = cpu_seconds();
    for _ in 0..repeat {
        let t = Instant::now();
        let f = fit(law.clone(), &points, &FitOptions::default())?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(f);
    }
    let cpu_grid = cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) / repeat as f64);
    times.sort_by(|a, b| a.total_cmp(b));
    let f = last.ok_or("no run")?;
    println!("{}", f.report.to_text());
    println!("threads: {}", rayon::current_num_threads());
    println!("grid_fit_4500_starts_s: median {:.4} min {:.4} (n={})", times[times.len() / 2], times[0], times.len());
    if let Some(c) = cpu_grid {
        println!("grid_fit_cpu_s_per_fit: {c:.3}");
    }
    let cpu1 = cpu_seconds();
    let t = Instant::now();
    let opts = FitOptions { bootstrap: Some(BootstrapOptions { resamples: 4000, seed: 42, level: 0.95 }), ..FitOptions::default() };
    let fb = fit(law, &points, &opts)?;
    let total = t.elapsed().as_secs_f64();
    println!("{}", fb.report.to_text());
    println!("bootstrap_4000_refits_plus_grid_fit_s: {:.4}", total);
    let cpu_boot = cpu_seconds().zip(cpu1).map(|(b, a)| b - a);
    if let Some(c) = cpu_boot {
        println!("bootstrap_cpu_s: {c:.3}");
    }
    // One JSON line for bench/laws/run.sh.
    let r = &f.report;
    let json = serde_json::json!({
        "threads": rayon::current_num_threads(),
        "starts": r.n_starts,
        "starts_reaching_best": r.n_converged,
        "converged_rtol": r.converged_rtol,
        "objective": r.objective_value,
        "A": f.get("A"), "B": f.get("B"), "E": f.get("E"), "alpha": f.get("alpha"), "beta": f.get("beta"),
        "grid_wall_median_s": times[times.len() / 2],
        "grid_wall_min_s": times[0],
        "grid_cpu_s": cpu_grid,
        "bootstrap_resamples": 4000,
        "bootstrap_plus_grid_wall_s": total,
        "bootstrap_plus_grid_cpu_s": cpu_boot,
        "se_alpha": fb.report.params.iter().find(|e| e.name == "alpha").and_then(|e| e.interval).map(|i| i.se),
    });
    println!("JSON {json}");
    Ok(())
}
