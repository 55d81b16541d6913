//! Benchmark: the 4,500-start Chinchilla fit on Epoch's 240 points, and
//! 4,000 seeded bootstrap refits. Prints the fit and timings (median of
//! `REPEAT` runs, default 5). Run: `cargo run --release -p dctk-laws --example bench_fit -- PATH_TO_CSV [REPEAT]`.
//!
//! `--law muennighoff PATH [REPEAT]`: the Muennighoff free fit (untied) from
//! its 25,600-start default grid on `bench/laws/muennighoff_182.csv`.
//! `--diagnose K` (with `--law muennighoff`): run a stride subset of K starts
//! one by one, with the analytic kernel and with the previous implementation
//! (libm scalar law + central finite-difference Jacobian), and print
//! per-start iterations, evaluations, stop status and time: the measured
//! reason the old fit was slow.

use dctk_laws::law::{finite_difference_jacobian, Inputs, LawForm, ParamSpec};
use dctk_laws::laws::Muennighoff;
use dctk_laws::optim::{minimize_bounded, LbfgsOptions, Status};
use dctk_laws::{builtin, fit, BootstrapOptions, ColumnMap, FitOptions, LawOptions, Points};
use std::collections::BTreeMap;
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
    let mut args: Vec<String> = std::env::args().collect();
    let flag = |args: &mut Vec<String>, name: &str| -> Option<String> {
        let k = args.iter().position(|a| a == name)?;
        let v = args.get(k + 1).cloned();
        args.drain(k..(k + 2).min(args.len()));
        v
    };
    let law_name = flag(&mut args, "--law").unwrap_or_else(|| "chinchilla".into());
    let diagnose: Option<usize> = flag(&mut args, "--diagnose").and_then(|s| s.parse().ok());
    match law_name.as_str() {
        "chinchilla" => chinchilla(&args),
        "muennighoff" => muennighoff(&args, diagnose),
        other => Err(format!("--law must be chinchilla or muennighoff, got {other}").into()),
    }
}

fn chinchilla(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
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
    let (f, times, cpu_grid) = timed_fits(&law, &points, repeat)?;
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

/// `repeat` default fits of `law` to `points`: the last fit, the wall times (sorted) and the
/// CPU seconds per fit (where the platform reports them).
fn timed_fits(law: &std::sync::Arc<dyn dctk_laws::LawForm>, points: &Points, repeat: usize) -> Result<(dctk_laws::Fit, Vec<f64>, Option<f64>), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut last = None;
    let cpu0 = cpu_seconds();
    for _ in 0..repeat {
        let t = Instant::now();
        let f = fit(law.clone(), points, &FitOptions::default())?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(f);
    }
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) / repeat as f64);
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((last.ok_or("no run")?, times, cpu))
}

/// The Muennighoff free fit (untied, 25,600-start default grid).
fn muennighoff(args: &[String], diagnose: Option<usize>) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.get(1).cloned().unwrap_or_else(|| "bench/laws/muennighoff_182.csv".into());
    let repeat: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let points = Points::from_csv(&path, &ColumnMap::parse("N=N,D=D,U=U,loss=loss")?)?;
    if let Some(k) = diagnose {
        return diagnose_starts(&points, k);
    }
    let law = builtin("muennighoff", &LawOptions::default())?;
    let (f, times, cpu) = timed_fits(&law, &points, repeat)?;
    println!("{}", f.report.to_text());
    println!("threads: {} simd: {}", rayon::current_num_threads(), dctk_laws::simd::level());
    println!("muennighoff_grid_fit_s: median {:.4} min {:.4} (n={})", times[times.len() / 2], times[0], times.len());
    if let Some(c) = cpu {
        println!("muennighoff_grid_fit_cpu_s_per_fit: {c:.3}");
    }
    let r = &f.report;
    let json = serde_json::json!({
        "law": "muennighoff",
        "threads": rayon::current_num_threads(),
        "simd": dctk_laws::simd::level(),
        "points": r.n_points,
        "starts": r.n_starts,
        "starts_reaching_best": r.n_converged,
        "converged_rtol": r.converged_rtol,
        "objective": r.objective_value,
        "A": f.get("A"), "B": f.get("B"), "E": f.get("E"), "alpha": f.get("alpha"), "beta": f.get("beta"),
        "rd_star": f.get("rd_star"), "rn_star": f.get("rn_star"),
        "grid_wall_median_s": times[times.len() / 2],
        "grid_wall_min_s": times[0],
        "grid_cpu_s": cpu,
    });
    println!("JSON {json}");
    Ok(())
}

/// Muennighoff as it was before the analytic kernel: the libm scalar law
/// and the trait's central finite-difference Jacobian (15 evaluations).
struct FiniteDifferenceMuennighoff(Muennighoff);

impl LawForm for FiniteDifferenceMuennighoff {
    fn name(&self) -> &str {
        "muennighoff_fd"
    }
    fn equation(&self) -> String {
        self.0.equation()
    }
    fn citation(&self) -> String {
        self.0.citation()
    }
    fn params(&self) -> Vec<ParamSpec> {
        self.0.params()
    }
    fn inputs(&self) -> Vec<String> {
        self.0.inputs()
    }
    fn default_grid(&self, inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>> {
        self.0.default_grid(inputs, loss)
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        self.log_predict_into(p, inputs, out);
        out.iter_mut().for_each(|v| *v = v.exp());
    }
    fn log_predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let q: [f64; 7] = p.try_into().expect("untied");
        let (n, d, u) = (inputs.col(0), inputs.col(1), inputs.col(2));
        for i in 0..out.len() {
            out[i] = Muennighoff::log_loss_at(&q, n[i], d[i], u[i]);
        }
    }
    fn log_jacobian_into(&self, p: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        self.log_predict_into(p, inputs, logpred);
        finite_difference_jacobian(p, inputs.len(), jac, |q, out| self.log_predict_into(q, inputs, out));
    }
}

/// Huber (δ = 1e-3) on ln residuals and its gradient, as the fitter's.
fn huber_value_grad(law: &dyn LawForm, inputs: &Inputs, ln_y: &[f64], x: &[f64], g: &mut [f64], pred: &mut [f64], jac: &mut [f64]) -> f64 {
    let n = ln_y.len();
    law.log_jacobian_into(x, inputs, pred, jac);
    let delta = 1e-3;
    let mut f = 0.0;
    g.iter_mut().for_each(|v| *v = 0.0);
    for i in 0..n {
        let r = pred[i] - ln_y[i];
        let (rho, psi) = if r.abs() <= delta { (0.5 * r * r, r) } else { (delta * (r.abs() - 0.5 * delta), delta * r.signum()) };
        f += rho;
        for (j, gj) in g.iter_mut().enumerate() {
            *gj += jac[j * n + i] * psi;
        }
    }
    if f.is_finite() { f } else { f64::INFINITY }
}

/// Per-start statistics of both implementations on a stride subset of the grid.
fn diagnose_starts(points: &Points, k: usize) -> Result<(), Box<dyn std::error::Error>> {
    let law = Muennighoff { tie_exponents: false };
    let inputs = points.law_inputs(&law)?;
    let ln_y: Vec<f64> = points.loss.iter().map(|y| y.ln()).collect();
    let grid = law.default_grid(&inputs, &points.loss);
    let stride = (grid.len() / k.max(1)).max(1);
    let starts: Vec<&Vec<f64>> = grid.iter().step_by(stride).take(k).collect();
    let specs = law.params();
    let (lo, hi): (Vec<f64>, Vec<f64>) = specs.iter().map(|s| (s.lower, s.upper)).unzip();
    // The fitter's screening pass: relative ftol 1e-9, max_iter 1000.
    let screen = LbfgsOptions { ftol: 1e-9, ..LbfgsOptions::default() };
    let old = FiniteDifferenceMuennighoff(law.clone());
    for (name, l) in [("analytic", &law as &dyn LawForm), ("libm+fd", &old as &dyn LawForm)] {
        let (mut pred, mut jac) = (vec![0.0; inputs.len()], vec![0.0; inputs.len() * 7]);
        let mut status: BTreeMap<String, usize> = BTreeMap::new();
        let (mut iters, mut evals) = (Vec::new(), 0usize);
        let t = Instant::now();
        for x0 in &starts {
            let r = minimize_bounded(|x, g| huber_value_grad(l, &inputs, &ln_y, x, g, &mut pred, &mut jac), x0, &lo, &hi, &screen);
            *status.entry(format!("{:?}", r.status)).or_default() += 1;
            iters.push(r.iterations);
            evals += r.evaluations;
        }
        let wall = t.elapsed().as_secs_f64();
        // Time of one objective+gradient evaluation alone.
        let mut g = vec![0.0; 7];
        let t = Instant::now();
        let reps = 2000;
        for _ in 0..reps {
            std::hint::black_box(huber_value_grad(l, &inputs, &ln_y, &Muennighoff::PUBLISHED, &mut g, &mut pred, &mut jac));
        }
        let per_eval_us = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
        iters.sort();
        let at_cap = status.get(&format!("{:?}", Status::MaxIterations)).copied().unwrap_or(0);
        println!(
            "measured_reason {name}: {} starts, {:.2} ms/start, {:.1} us/evaluation, {:.1} evaluations/start, iterations median {} max {}, {} at max_iter, status {:?}",
            starts.len(),
            wall / starts.len() as f64 * 1e3,
            per_eval_us,
            evals as f64 / starts.len() as f64,
            iters[iters.len() / 2],
            iters[iters.len() - 1],
            at_cap,
            status
        );
    }
    Ok(())
}
