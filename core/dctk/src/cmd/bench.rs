//! `dctk bench train`: dctk's training throughput, peak RSS and minor page faults side by
//! side with PyTorch references of the same model on the same device and threads (eager,
//! eager with dctk's allocator setting, eager with chunked cross-entropy, `torch.compile`),
//! every side of every round a fresh process (dctk re-runs itself with a hidden
//! `--one-side dctk`); `dctk bench generate`:
//! decode throughput with and without the KV cache, beside Hugging Face `transformers`
//! `generate` on the same model exported (`dctk export-hf`). Rounds alternate the
//! sides (the machine may be shared); the ratio reported is the median of the
//! per-round ratios. Benchmarks, never tests.
use std::path::PathBuf;
use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use clap::{value_parser, Arg, ArgMatches, Command};

use crate::bench::{train_stats, train_tokens_per_s, TrainBench};
use crate::env;
use crate::train::ModelConfig;

pub fn cli() -> Command {
    Command::new("bench").about("Benchmarks (side by side with reference implementations)").subcommand_required(true).subcommand(
        Command::new("train")
            .about("Training tokens/s, peak RSS and page faults: dctk vs PyTorch (eager, eager with dctk's allocator setting, eager with chunked cross-entropy, torch.compile) on the same model, device and threads, each side a fresh process per round")
            .arg(Arg::new("preset").long("preset").default_value("tiny"))
            .arg(Arg::new("seq-len").long("seq-len").value_parser(value_parser!(i64)).default_value("256"))
            .arg(Arg::new("batch").long("batch").value_parser(value_parser!(i64)).default_value("16"))
            .arg(Arg::new("steps").long("steps").value_parser(value_parser!(usize)).default_value("20"))
            .arg(Arg::new("warmup").long("warmup").value_parser(value_parser!(usize)).default_value("3").help("Untimed steps first (compile: at least 2, its compilation)"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)))
            .arg(Arg::new("device").long("device").default_value("auto"))
            .arg(Arg::new("precision").long("precision").default_value("auto").help("fp32 or bf16 (auto: bf16 on CUDA)"))
            .arg(
                Arg::new("sides")
                    .long("sides")
                    .help("Comma-separated sides, run in this order each round: dctk, eager (PyTorch eager), eager-alloc (eager with dctk's glibc allocator setting), eager-chunked (eager with chunked cross-entropy), compile (torch.compile) [default: all]"),
            )
            .arg(Arg::new("chunk").long("chunk").value_parser(value_parser!(i64)).default_value("1024").help("Rows per chunk of eager-chunked's cross-entropy"))
            .arg(Arg::new("json").long("json").value_parser(value_parser!(PathBuf)).help("Also write every round, the summary and the machine as JSON here"))
            .arg(
                Arg::new("python")
                    .long("python")
                    .value_parser(value_parser!(PathBuf))
                    .default_value("bench/.venv/bin/python")
                    .help("Python with torch installed (bash bench/setup.sh makes bench/.venv); a bare name is looked up in PATH"),
            )
            .arg(Arg::new("reference").long("reference").value_parser(value_parser!(PathBuf)).default_value("bench/train_ref.py"))
            .arg(
                Arg::new("tuned-reference")
                    .long("tuned-reference")
                    .action(clap::ArgAction::SetTrue)
                    .help("Include the eager-alloc side (PyTorch eager with dctk's glibc allocator setting, GLIBC_TUNABLES)"),
            )
            .arg(
                Arg::new("peak-tflops")
                    .long("peak-tflops")
                    .value_parser(value_parser!(f64))
                    .default_value("790")
                    .help("Peak TFLOP/s of the device for MFU on CUDA (default 790: the H200's ~790 TFLOP/s bf16 dense that dctk's MFU is quoted against; its spec-sheet dense peak is 989)"),
            )
            .arg(Arg::new("one-side").long("one-side").value_parser(["dctk"]).hide(true).help("Internal: run one side once in this process and print key=value lines")),
    )
    .subcommand(
        Command::new("generate")
            .about("Decode tokens/s: dctk with the KV cache vs without it vs transformers generate on the exported model")
            .arg(Arg::new("run").long("run").required(true).value_parser(value_parser!(PathBuf)).help("A trained cell, runs/<id>"))
            .arg(Arg::new("batch").long("batch").value_delimiter(',').value_parser(value_parser!(usize)).default_value("1,8").help("Batch sizes (comma-separated)"))
            .arg(Arg::new("prompt-tokens").long("prompt-tokens").value_parser(value_parser!(usize)).default_value("32"))
            .arg(Arg::new("new-tokens").long("new-tokens").value_parser(value_parser!(usize)).default_value("64"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)).default_value("2"))
            .arg(Arg::new("device").long("device").default_value("auto"))
            .arg(
                Arg::new("python")
                    .long("python")
                    .value_parser(value_parser!(PathBuf))
                    .default_value(".dctk/hf-venv/bin/python")
                    .help("Python with torch and transformers (bash tools/hf_env.sh makes .dctk/hf-venv)"),
            )
            .arg(Arg::new("reference").long("reference").value_parser(value_parser!(PathBuf)).default_value("bench/hf_generate.py"))
            .arg(Arg::new("no-reference").long("no-reference").action(clap::ArgAction::SetTrue).help("Only dctk's two paths (no Python)"))
            .arg(
                Arg::new("server-clients")
                    .long("server-clients")
                    .value_delimiter(',')
                    .value_parser(value_parser!(usize))
                    .default_value("1,8,32")
                    .help("Server throughput at these numbers of concurrent clients (empty: skip)"),
            )
            .arg(Arg::new("server-requests").long("server-requests").value_parser(value_parser!(usize)).default_value("4").help("Requests per client")),
    )
    .subcommand(
        Command::new("augment")
            .about("Synthetic tokens/s of an augmenter's generate cell (local, and through dctk serve) and the pipeline's overhead over raw generation of the same requests (target < 10%)")
            .arg(Arg::new("run").long("run").required(true).value_parser(value_parser!(PathBuf)).help("A trained cell, runs/<id>: the generator"))
            .arg(Arg::new("augmenter").long("augmenter").default_value("megadoc_stitch").help("A built-in (rephrase, megadoc_stitch, megadoc_simple, megadoc_stretch, latent_thoughts) or a plugin"))
            .arg(Arg::new("settings").long("settings").help("More `generate` settings as a JSON object (e.g. '{\"domain\": \"quotes\"}')"))
            .arg(Arg::new("docs").long("docs").value_parser(value_parser!(usize)).default_value("16").help("Source documents (max_docs)"))
            .arg(Arg::new("n-per-doc").long("n-per-doc").value_parser(value_parser!(usize)).default_value("4"))
            .arg(Arg::new("max-tokens").long("max-tokens").value_parser(value_parser!(usize)).default_value("64"))
            .arg(Arg::new("batch").long("batch").value_parser(value_parser!(usize)).default_value("8"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)).default_value("2"))
            .arg(Arg::new("device").long("device").default_value("auto"))
            .arg(Arg::new("no-serve").long("no-serve").action(clap::ArgAction::SetTrue).help("Skip the dctk serve side")),
    )
    .subcommand(
        Command::new("plan")
            .about("Wall time of `dctk plan` on a 10,000-cell sweep (target: under 1 s), beside a 1-cell plan")
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("5"))
            .arg(
                Arg::new("data-root")
                    .long("data-root")
                    .value_parser(value_parser!(PathBuf))
                    .default_value("data")
                    .help("Data root holding the bundled `corpora/` (the repository's data/)"),
            ),
    )
    .subcommand(
        Command::new("report")
            .about("Wall time of `dctk report` on a synthetic 1,000-cell study (target: under 2 s), process start included")
            .arg(Arg::new("cells").long("cells").value_parser(value_parser!(usize)).default_value("1000"))
            .arg(Arg::new("steps").long("steps").value_parser(value_parser!(u64)).default_value("400").help("Logged steps per cell"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("5")),
    )
    .subcommand(
        Command::new("regularizer")
            .about("Step-time overhead of a regularizer plugin (e.g. MIR) vs none")
            .arg(Arg::new("name").long("name").default_value("mir"))
            .arg(Arg::new("preset").long("preset").default_value("tiny"))
            .arg(Arg::new("seq-len").long("seq-len").value_parser(value_parser!(i64)).default_value("128"))
            .arg(Arg::new("batch").long("batch").value_parser(value_parser!(i64)).default_value("16"))
            .arg(Arg::new("steps").long("steps").value_parser(value_parser!(usize)).default_value("8"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)))
            .arg(Arg::new("device").long("device").default_value("auto")),
    )
}

/// The same allocator setting as `env::tune_allocator`, for a process we do not control.
const TUNED_GLIBC: &str = env::GLIBC_TUNABLES;

pub fn exec(args: &ArgMatches) -> Result<()> {
    if let Some((_, a)) = args.subcommand() {
        // A median of nothing is no number: each counted option needs at least one.
        for key in ["rounds", "steps"] {
            if a.try_get_one::<usize>(key).ok().flatten() == Some(&0) {
                bail!("--{key} must be at least 1 (a benchmark needs a measurement to report)");
            }
        }
    }
    match args.subcommand() {
        Some(("train", a)) => exec_train(a),
        Some(("regularizer", a)) => exec_regularizer(a),
        Some(("plan", a)) => exec_plan(a),
        Some(("report", a)) => exec_report(a),
        Some(("generate", a)) => exec_generate(a),
        Some(("augment", a)) => exec_augment(a),
        _ => unreachable!("clap requires a known subcommand"),
    }
}

/// The 10,000-cell sweep of `dctk bench plan`: 2 models × 5 budgets × 10 epochs × 10
/// learning rates × 10 weight decays over the bundled corpus.
const PLAN_SWEEP: &str = r#"
let base = #{ name: "bench", corpus: "data:corpora", seq_len: 64, batch_size: 8, val_tokens: 512 };
let cells = sweep(base, grid(#{
    model: ["micro", "tiny"],
    unique_tokens: [10_000, 20_000, 40_000, 80_000, 160_000],
    epochs: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    lr: [1e-3, 2e-3, 3e-3, 4e-3, 6e-3, 8e-3, 1e-2, 1.5e-2, 2e-2, 3e-2],
    weight_decay: [0.0, 0.1, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 20.0, 40.0],
}));
let runs = train(cells);
print(`${runs.len()} cells`);
"#;

/// `dctk plan` wall time (process start included) on a 10,000-cell sweep, alternating
/// with a 1-cell plan of the same corpus (process start + data planning).
fn exec_plan(args: &ArgMatches) -> Result<()> {
    let root = args.get_one::<PathBuf>("data-root").unwrap();
    let root = root.canonicalize().with_context(|| format!("data root {}", root.display()))?;
    if !root.join("corpora").is_dir() {
        bail!("{}: no corpora/ here; pass --data-root DIR (the repository's data/)", root.display());
    }
    let dir = std::env::temp_dir().join(format!("dctk-bench-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let big = dir.join("sweep.rhai");
    std::fs::write(&big, PLAN_SWEEP)?;
    let one = dir.join("one.rhai");
    std::fs::write(&one, "train(#{ name: \"one\", model: \"micro\", corpus: \"data:corpora\", unique_tokens: 10_000, epochs: 1, seq_len: 64, batch_size: 8, val_tokens: 512 });\n")?;
    // The `dctk` front, as a user runs it (plan needs no libtorch).
    let exe = env::user_binary()?;
    let plan = |script: &PathBuf| -> Result<f64> {
        let t = std::time::Instant::now();
        let out = Process::new(&exe)
            .arg("plan")
            .arg(script)
            .arg("--data-root")
            .arg(&root)
            .arg("--runs")
            .arg(dir.join("runs"))
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("dctk plan {} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(secs)
    };
    // Warm-up: ingests the corpus into the runs root's cache once.
    plan(&one)?;
    plan(&big)?;
    println!("{:>5}  {:>12}  {:>12}", "round", "10,000 cells", "1 cell");
    let (mut bigs, mut ones) = (Vec::new(), Vec::new());
    for round in 1..=*args.get_one::<usize>("rounds").unwrap() {
        let b = plan(&big)?;
        let o = plan(&one)?;
        println!("{round:>5}  {b:>10.3} s  {o:>10.3} s");
        bigs.push(b);
        ones.push(o);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (b, o) = (median(&mut bigs), median(&mut ones));
    println!(
        "median: 10,000-cell plan {b:.3} s (target < 1 s: {}); 1-cell plan {o:.3} s (process start, data); per cell {:.1} µs",
        if b < 1.0 { "met" } else { "NOT met" },
        (b - o) / 9_999.0 * 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `dctk report` of a synthetic study, as a process (start and libtorch load included).
fn exec_report(args: &ArgMatches) -> Result<()> {
    let cells = *args.get_one::<usize>("cells").unwrap();
    let steps = (*args.get_one::<u64>("steps").unwrap()).max(1);
    let dir = std::env::temp_dir().join(format!("dctk-bench-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let t = std::time::Instant::now();
    let script = crate::bench::report::synthetic_study(&dir, cells, steps)?;
    eprintln!("synthetic study: {cells} cells, {steps} logged steps each, one Chinchilla fit ({:.1} s to write)", t.elapsed().as_secs_f64());
    let exe = env::user_binary()?;
    let out = dir.join("report.html");
    let run = || -> Result<f64> {
        let t = std::time::Instant::now();
        let o = Process::new(&exe).arg("report").arg(&script).arg("--runs").arg(dir.join("runs")).arg("--out").arg(&out).output()?;
        let secs = t.elapsed().as_secs_f64();
        if !o.status.success() {
            bail!("dctk report failed:\n{}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(secs)
    };
    run()?; // warm the page cache
    println!("{:>5}  {:>10}", "round", "seconds");
    let mut times = Vec::new();
    for round in 1..=*args.get_one::<usize>("rounds").unwrap() {
        let s = run()?;
        println!("{round:>5}  {s:>8.3} s");
        times.push(s);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let bytes = std::fs::metadata(&out)?.len();
    println!(
        "median: report of {cells} cells {median:.3} s (target < 2 s: {}); page {:.2} MB",
        if median < 2.0 { "met" } else { "NOT met" },
        bytes as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Step time with a regularizer plugin vs without, same model and batch, alternating.
fn exec_regularizer(args: &ArgMatches) -> Result<()> {
    let name = args.get_one::<String>("name").unwrap();
    let preset = args.get_one::<String>("preset").unwrap();
    let seq_len = *args.get_one::<i64>("seq-len").unwrap();
    let config = ModelConfig::preset(preset, seq_len).with_context(|| format!("unknown preset \"{preset}\""))?;
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let mut bench = TrainBench {
        config,
        batch_size: *args.get_one::<i64>("batch").unwrap(),
        seq_len,
        warmup_steps: 2,
        steps: *args.get_one::<usize>("steps").unwrap(),
        device: env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?,
        kind: tch::Kind::Float,
        regularizers: vec![],
    };
    println!("{:>5}  {:>12}  {:>12}  {:>9}", "round", "none tok/s", format!("{name} tok/s"), "overhead");
    let mut ratios = Vec::new();
    for round in 1..=*args.get_one::<usize>("rounds").unwrap() {
        bench.regularizers = vec![];
        let base = train_tokens_per_s(&bench)?;
        bench.regularizers = vec![crate::plugin::regularizer::RegularizerRequest::new(name, serde_json::Value::Null)];
        let with = train_tokens_per_s(&bench)?;
        ratios.push(base / with);
        println!("{round:>5}  {base:>12.0}  {with:>12.0}  {:>8.2}×", base / with);
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median step-time overhead of {name}: {:.2}× (step time with / without)", ratios[ratios.len() / 2]);
    Ok(())
}

/// The sides of `dctk bench train`, in the order each round runs them.
const TRAIN_SIDES: [&str; 5] = ["dctk", "eager", "eager-alloc", "eager-chunked", "compile"];

/// One side of one round of `dctk bench train`, as its process printed it.
struct SideRun {
    round: usize,
    side: &'static str,
    tokens_per_s: f64,
    peak_rss_kib: Option<f64>,
    minor_faults_per_step: Option<f64>,
    peak_gpu_mib: Option<f64>,
    warmup_steps: Option<f64>,
}

/// `key=value` lines of a side's stdout.
fn key_values(stdout: &[u8]) -> std::collections::BTreeMap<String, f64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A program given as a bare name (`python3`) is looked up in PATH, as the shell would.
fn find_program(p: &std::path::Path) -> Option<PathBuf> {
    if p.components().count() > 1 || p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(p)).find(|c| c.is_file())
}

/// The `--sides` list, validated, de-duplicated and put in [`TRAIN_SIDES`] order.
fn train_sides(args: &ArgMatches) -> Result<Vec<&'static str>> {
    let mut wanted: Vec<&'static str> = match args.get_one::<String>("sides") {
        None => TRAIN_SIDES.to_vec(),
        Some(list) => {
            let mut v = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let Some(&side) = TRAIN_SIDES.iter().find(|&&s| s == name) else {
                    bail!("--sides: unknown side \"{name}\"; the sides are {}", TRAIN_SIDES.join(", "));
                };
                v.push(side);
            }
            if v.is_empty() {
                bail!("--sides: no side given; the sides are {}", TRAIN_SIDES.join(", "));
            }
            v
        }
    };
    if args.get_flag("tuned-reference") {
        wanted.push("eager-alloc");
    }
    Ok(TRAIN_SIDES.iter().copied().filter(|s| wanted.contains(s)).collect())
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    // An even count takes the mean of the middle two (two rounds: their mean, not the larger).
    Some(if n % 2 == 0 { (v[n / 2 - 1] + v[n / 2]) / 2.0 } else { v[n / 2] })
}

/// UTC date and time now, ISO 8601 (no calendar crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())))
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn exec_train(args: &ArgMatches) -> Result<()> {
    let preset = args.get_one::<String>("preset").unwrap();
    let seq_len = *args.get_one::<i64>("seq-len").unwrap();
    let batch = *args.get_one::<i64>("batch").unwrap();
    let config = ModelConfig::preset(preset, seq_len).with_context(|| format!("unknown preset \"{preset}\""))?;
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let threads = tch::get_num_threads();
    let device = env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?;
    let kind = match (args.get_one::<String>("precision").unwrap().as_str(), device) {
        ("bf16", _) | ("auto", tch::Device::Cuda(_)) => tch::Kind::BFloat16,
        ("fp32", _) | ("auto", _) => tch::Kind::Float,
        (other, _) => bail!("--precision \"{other}\" is not one of auto, fp32, bf16"),
    };
    let precision = if kind == tch::Kind::BFloat16 { "bf16" } else { "fp32" };
    let (steps, warmup) = (*args.get_one::<usize>("steps").unwrap(), *args.get_one::<usize>("warmup").unwrap());
    if args.get_one::<String>("one-side").is_some() {
        // A child of the parent below: dctk's side, once, in this fresh process.
        let bench = TrainBench { config, batch_size: batch, seq_len, warmup_steps: warmup, steps, device, kind, regularizers: vec![] };
        let stats = train_stats(&bench)?;
        println!("tokens_per_s={}", stats.tokens_per_s);
        if let Some(f) = stats.minor_faults_per_step {
            println!("minor_faults_per_step={f}");
        }
        println!("warmup_steps={warmup}");
        if let Some(r) = crate::bench::peak_rss_kib() {
            println!("peak_rss_kib={r}");
        }
        return Ok(());
    }
    let sides = train_sides(args)?;
    let chunk = *args.get_one::<i64>("chunk").unwrap();
    if chunk < 1 {
        bail!("--chunk must be at least 1");
    }
    let reference = args.get_one::<PathBuf>("reference").unwrap();
    let python = if sides.iter().any(|&s| s != "dctk") {
        let given = args.get_one::<PathBuf>("python").unwrap();
        let Some(python) = find_program(given) else {
            bail!(
                "{}: no such Python; run `bash bench/setup.sh` to make bench/.venv with torch for the PyTorch sides (or pass --python, or --sides dctk)",
                given.display()
            );
        };
        if !reference.is_file() {
            bail!("{}: no reference script here; run from the repository root or pass --reference bench/train_ref.py", reference.display());
        }
        Some(python)
    } else {
        None
    };
    let exe = std::env::current_exe()?;
    let device_name = env::device_name(device);
    let cuda = matches!(device, tch::Device::Cuda(_));
    let load_start = loadavg_1min();
    let started = utc_now();
    let cpu = cpu_model();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let gpus = if cuda { env::gpu_names() } else { vec![] };
    println!(
        "model {preset} ({:.2}M params), batch {batch} × seq {seq_len}, {steps} timed steps after {warmup} warm-up, device {device_name}{}, {precision}, {threads} threads",
        config.total_params() as f64 / 1e6,
        gpus.first().map(|g| format!(" ({g})")).unwrap_or_default()
    );
    println!(
        "machine: {cpu}, {nproc} CPUs, load {} (1-min) at start; each side a fresh process per round, sides in turn: {}",
        load_start.map_or("?".into(), |l| format!("{l:.2}")),
        sides.join(", ")
    );
    let model_args: Vec<String> = vec![
        "--seq-len".into(),
        seq_len.to_string(),
        "--batch".into(),
        batch.to_string(),
        "--steps".into(),
        steps.to_string(),
        "--warmup".into(),
        warmup.to_string(),
        "--threads".into(),
        threads.to_string(),
        "--device".into(),
        device_name.clone(),
        "--precision".into(),
        precision.into(),
    ];
    let run_side = |side: &'static str| -> Result<std::collections::BTreeMap<String, f64>> {
        let mut cmd = if side == "dctk" {
            let mut c = Process::new(&exe);
            c.args(["bench", "train", "--one-side", "dctk", "--preset", preset]).args(&model_args);
            c
        } else {
            let mut c = Process::new(python.as_ref().unwrap());
            c.arg(reference)
                .args(["--n-layer", &config.n_layer.to_string(), "--d-model", &config.d_model.to_string()])
                .args(["--n-head", &config.n_head.to_string(), "--d-ff", &config.d_ff.to_string()])
                .args(["--vocab", &config.vocab_size.to_string()])
                .args(&model_args);
            match side {
                "eager-alloc" => {
                    c.env("GLIBC_TUNABLES", TUNED_GLIBC);
                }
                "eager-chunked" => {
                    c.args(["--variant", "chunked", "--chunk", &chunk.to_string()]).env_remove("GLIBC_TUNABLES");
                }
                "compile" => {
                    c.args(["--variant", "compile"]).env_remove("GLIBC_TUNABLES");
                }
                _ => {
                    c.env_remove("GLIBC_TUNABLES");
                }
            }
            c
        };
        let out = cmd.output().with_context(|| format!("starting the {side} side: {cmd:?}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("the {side} side failed ({}):\n{}", out.status, tail.join("\n"));
        }
        let kv = key_values(&out.stdout);
        if !kv.contains_key("tokens_per_s") {
            bail!("the {side} side printed no tokens_per_s= line:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(kv)
    };
    let gib = |kib: Option<f64>| kib.map_or("n/a".to_string(), |k| format!("{:.3}", k / 1_048_576.0));
    let opt = |v: Option<f64>, prec: usize| v.map_or("n/a".to_string(), |x| format!("{x:.prec$}"));
    if cuda {
        println!("{:>5}  {:<13}  {:>12}  {:>12}  {:>12}  {:>13}", "round", "side", "tok/s", "peak RSS GiB", "faults/step", "peak GPU MiB");
    } else {
        println!("{:>5}  {:<13}  {:>12}  {:>12}  {:>12}", "round", "side", "tok/s", "peak RSS GiB", "faults/step");
    }
    let rounds = *args.get_one::<usize>("rounds").unwrap();
    let mut runs: Vec<SideRun> = Vec::new();
    for round in 1..=rounds {
        for &side in &sides {
            let kv = run_side(side)?;
            let r = SideRun {
                round,
                side,
                tokens_per_s: kv["tokens_per_s"],
                peak_rss_kib: kv.get("peak_rss_kib").copied(),
                minor_faults_per_step: kv.get("minor_faults_per_step").copied(),
                peak_gpu_mib: kv.get("peak_gpu_mib").copied(),
                warmup_steps: kv.get("warmup_steps").copied(),
            };
            if cuda {
                println!(
                    "{round:>5}  {side:<13}  {:>12.0}  {:>12}  {:>12}  {:>13}",
                    r.tokens_per_s,
                    gib(r.peak_rss_kib),
                    opt(r.minor_faults_per_step, 1),
                    opt(r.peak_gpu_mib, 0)
                );
            } else {
                println!("{round:>5}  {side:<13}  {:>12.0}  {:>12}  {:>12}", r.tokens_per_s, gib(r.peak_rss_kib), opt(r.minor_faults_per_step, 1));
            }
            runs.push(r);
        }
    }
    let load_end = loadavg_1min();
    // Per side: medians, and dctk / side as the median of the per-round ratios.
    let of = |side: &str| -> Vec<&SideRun> { runs.iter().filter(|r| r.side == side).collect() };
    let dctk_runs = of("dctk");
    let peak = args.get_one::<f64>("peak-tflops").copied().unwrap() * 1e12;
    let flops = config.flops_per_token(seq_len);
    let mut summary = Vec::new();
    println!();
    println!(
        "median of {rounds} round(s){}:",
        if sides.contains(&"dctk") { "; dctk/side: median of the per-round ratios (tok/s above 1: dctk faster; RSS below 1: dctk smaller)" } else { "" }
    );
    print!("{:<13}  {:>12}  {:>12}  {:>12}  {:>15}  {:>15}", "side", "tok/s", "peak RSS GiB", "faults/step", "dctk/side tok/s", "dctk/side RSS");
    if cuda {
        print!("  {:>13}  {:>6}", "peak GPU MiB", "MFU");
    }
    println!();
    for &side in &sides {
        let rs = of(side);
        let tps = median(&rs.iter().map(|r| r.tokens_per_s).collect::<Vec<_>>()).unwrap_or(f64::NAN);
        let rss = median(&rs.iter().filter_map(|r| r.peak_rss_kib).collect::<Vec<_>>());
        let faults = median(&rs.iter().filter_map(|r| r.minor_faults_per_step).collect::<Vec<_>>());
        let gpu = median(&rs.iter().filter_map(|r| r.peak_gpu_mib).collect::<Vec<_>>());
        let (tps_ratio, rss_ratio) = if dctk_runs.is_empty() {
            (None, None)
        } else {
            let t: Vec<f64> = dctk_runs.iter().zip(&rs).map(|(d, s)| d.tokens_per_s / s.tokens_per_s).collect();
            let m: Vec<f64> = dctk_runs.iter().zip(&rs).filter_map(|(d, s)| Some(d.peak_rss_kib? / s.peak_rss_kib?)).collect();
            (median(&t), median(&m))
        };
        let mfu = cuda.then(|| tps * flops / peak);
        print!("{side:<13}  {tps:>12.0}  {:>12}  {:>12}  {:>15}  {:>15}", gib(rss), opt(faults, 1), opt(tps_ratio, 3), opt(rss_ratio, 3));
        if cuda {
            print!("  {:>13}  {:>5.1}%", opt(gpu, 0), 100.0 * mfu.unwrap());
        }
        println!();
        summary.push(serde_json::json!({
            "side": side,
            "tokens_per_s": tps,
            "peak_rss_kib": rss,
            "minor_faults_per_step": faults,
            "peak_gpu_mib": gpu,
            "dctk_over_side_tokens_per_s": tps_ratio,
            "dctk_over_side_peak_rss": rss_ratio,
            "mfu": mfu,
            "warmup_steps": median(&rs.iter().filter_map(|r| r.warmup_steps).collect::<Vec<_>>()),
        }));
    }
    if cuda {
        println!("MFU: tok/s × {flops:.3e} FLOPs/token / {:.0} TFLOP/s peak (--peak-tflops); dctk's peak GPU memory is not measured (n/a)", peak / 1e12);
    }
    if sides.contains(&"compile") && warmup < 2 {
        println!("note: compile ran {} warm-up steps (its compilation), the others {warmup}", 2);
    }
    println!("load (1-min) at start {}, at end {}", opt(load_start, 2), opt(load_end, 2));
    if let Some(path) = args.get_one::<PathBuf>("json") {
        let doc = serde_json::json!({
            "benchmark": "dctk bench train",
            "date": started,
            "machine": {
                "cpu": cpu,
                "nproc": nproc,
                "loadavg_1min_start": load_start,
                "loadavg_1min_end": load_end,
                "gpus": gpus,
            },
            "dctk_version": env!("CARGO_PKG_VERSION"),
            "preset": preset,
            "params": config.total_params(),
            "flops_per_token": flops,
            "seq_len": seq_len,
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "rounds": rounds,
            "threads": threads,
            "device": device_name,
            "precision": precision,
            "chunk": chunk,
            "peak_tflops": peak / 1e12,
            "sides": sides,
            "python": python.as_ref().map(|p| p.display().to_string()),
            "runs": runs.iter().map(|r| serde_json::json!({
                "round": r.round,
                "side": r.side,
                "tokens_per_s": r.tokens_per_s,
                "peak_rss_kib": r.peak_rss_kib,
                "minor_faults_per_step": r.minor_faults_per_step,
                "peak_gpu_mib": r.peak_gpu_mib,
                "warmup_steps": r.warmup_steps,
            })).collect::<Vec<_>>(),
            "summary": summary,
        });
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Decode throughput, side by side per round: dctk with the KV cache, dctk recomputing the
/// prefix, and `transformers` `generate` (greedy, `use_cache=True`) on the same weights
/// exported with `dctk export-hf`, same threads, batch and lengths.
fn exec_generate(args: &ArgMatches) -> Result<()> {
    let run = args.get_one::<PathBuf>("run").unwrap();
    let threads = *args.get_one::<i32>("threads").unwrap();
    let (prompt, new) = (*args.get_one::<usize>("prompt-tokens").unwrap(), *args.get_one::<usize>("new-tokens").unwrap());
    let rounds = *args.get_one::<usize>("rounds").unwrap();
    let batches: Vec<usize> = args.get_many::<usize>("batch").unwrap().copied().collect();
    if batches.contains(&0) || new == 0 || prompt == 0 {
        bail!("--batch, --prompt-tokens and --new-tokens must be at least 1");
    }
    tch::set_num_threads(threads);
    let device = env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?;
    let model = crate::generate::LoadedModel::open(run, device)?;
    if (prompt + new) as i64 > model.config.max_seq_len {
        bail!("--prompt-tokens + --new-tokens = {} exceed the model's context of {}", prompt + new, model.config.max_seq_len);
    }
    let reference = if args.get_flag("no-reference") {
        None
    } else {
        let python = args.get_one::<PathBuf>("python").unwrap().clone();
        let script = args.get_one::<PathBuf>("reference").unwrap().clone();
        if !python.exists() {
            bail!("{}: no Python with transformers; run `bash tools/hf_env.sh` (or pass --python, or --no-reference)", python.display());
        }
        let dir = std::env::temp_dir().join(format!("dctk-bench-generate-{}", std::process::id()));
        let out = Process::new(std::env::current_exe()?).arg("export-hf").arg(run).arg("--out").arg(&dir).arg("--force").output()?;
        if !out.status.success() {
            bail!("dctk export-hf failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Some((python, script, dir))
    };
    let hf = |batch: usize| -> Result<f64> {
        let (python, script, dir) = reference.as_ref().unwrap();
        let out = Process::new(python)
            .arg(script)
            .args(["--model", &dir.display().to_string(), "--batch", &batch.to_string(), "--prompt-tokens", &prompt.to_string()])
            .args(["--new-tokens", &new.to_string(), "--threads", &threads.to_string(), "--reps", "1"])
            .args(["--device", if device == tch::Device::Cpu { "cpu" } else { "cuda" }])
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        if !out.status.success() {
            bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("")).with_context(|| format!("{}: no JSON line in {line:?}", script.display()))?;
        v["tokens_per_s"].as_f64().with_context(|| format!("{}: no tokens_per_s in {v}", script.display()))
    };
    println!("model {} ({} layers, d {}), prompt {prompt} + {new} new tokens, greedy, {threads} thread(s), {}", model.run_id, model.config.n_layer, model.config.d_model, env::device_name(device));
    println!("{:>5}  {:>5}  {:>14}  {:>14}  {:>14}  {:>10}  {:>10}", "batch", "round", "cache tok/s", "no-cache tok/s", "hf tok/s", "cache/none", "dctk/hf");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    for &batch in &batches {
        // Warm-up of every side (allocator, kernels, the Python import).
        crate::bench::generate_tokens_per_s(&model, batch, prompt, new, true)?;
        let (mut vs_none, mut vs_hf) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let cached = crate::bench::generate_tokens_per_s(&model, batch, prompt, new, true)?;
            let uncached = crate::bench::generate_tokens_per_s(&model, batch, prompt, new, false)?;
            let reference = if reference.is_some() { Some(hf(batch)?) } else { None };
            vs_none.push(cached / uncached);
            let hf_cell = match reference {
                Some(r) => {
                    vs_hf.push(cached / r);
                    (format!("{r:.0}"), format!("{:.2}×", cached / r))
                }
                None => ("-".into(), "-".into()),
            };
            println!("{batch:>5}  {round:>5}  {cached:>14.0}  {uncached:>14.0}  {:>14}  {:>9.2}×  {:>10}", hf_cell.0, cached / uncached, hf_cell.1);
        }
        let hf_ratio = if vs_hf.is_empty() { "not measured".to_string() } else { format!("{:.2}× (target ≥ 1.0×)", median(&mut vs_hf)) };
        println!("batch {batch}: median KV cache speed-up {:.2}×; dctk / transformers {hf_ratio}", median(&mut vs_none));
    }
    if let Some((_, _, dir)) = &reference {
        let _ = std::fs::remove_dir_all(dir);
    }
    let clients: Vec<usize> = args.get_many::<usize>("server-clients").map(|c| c.copied().filter(|&c| c > 0).collect()).unwrap_or_default();
    if !clients.is_empty() {
        drop(model);
        let per_client = *args.get_one::<usize>("server-requests").unwrap();
        let rows = crate::serve::bench::throughput(run, device, Some(threads as usize), &clients, per_client, new)?;
        println!("dctk serve ({new} tokens per request, {per_client} request(s) per client, loopback HTTP):");
        println!("{:>8}  {:>9}  {:>11}  {:>11}  {:>8}", "clients", "requests", "requests/s", "tokens/s", "batches");
        for r in rows {
            println!("{:>8}  {:>9}  {:>11.1}  {:>11.0}  {:>8}", r.clients, r.requests, r.requests_per_s, r.tokens_per_s, r.batches);
        }
    }
    Ok(())
}

fn exec_augment(args: &ArgMatches) -> Result<()> {
    use crate::bench::augment::{augment_throughput, AugmentBench, AugmentRow};
    let threads = *args.get_one::<i32>("threads").unwrap();
    tch::set_num_threads(threads);
    let device = env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?;
    let augmenter = args.get_one::<String>("augmenter").unwrap();
    let mut spec = serde_json::json!({
        "augmenter": augmenter,
        "max_docs": args.get_one::<usize>("docs").unwrap(),
        "n_per_doc": args.get_one::<usize>("n-per-doc").unwrap(),
        "max_tokens": args.get_one::<usize>("max-tokens").unwrap(),
        "temperature": 1.0,
        "seed": 0,
    });
    if let Some(more) = args.get_one::<String>("settings") {
        let more: serde_json::Value = serde_json::from_str(more).map_err(|e| anyhow::anyhow!("--settings: not JSON: {e}"))?;
        let Some(more) = more.as_object() else { bail!("--settings: expected a JSON object of generate settings") };
        for (k, v) in more {
            spec[k] = v.clone();
        }
    }
    let rounds = *args.get_one::<usize>("rounds").unwrap();
    let b = AugmentBench {
        run_dir: args.get_one::<PathBuf>("run").unwrap().clone(),
        spec,
        batch_size: *args.get_one::<usize>("batch").unwrap(),
        device,
        threads: Some(threads as usize),
        scratch: std::env::temp_dir().join(format!("dctk-bench-augment-{}", std::process::id())),
    };
    let rows = augment_throughput(&b, rounds, !args.get_flag("no-serve"))?;
    println!("augmenter {augmenter}, {} thread(s), batch {}, {}", threads, b.batch_size, env::device_name(device));
    println!("{:>8}  {:>5}  {:>8}  {:>8}  {:>13}  {:>13}", "side", "round", "seconds", "requests", "generated/s", "synthetic/s");
    for r in &rows {
        let synthetic = r.synthetic_tokens.map_or("-".to_string(), |t| format!("{:.0}", t as f64 / r.seconds));
        println!("{:>8}  {:>5}  {:>8.2}  {:>8}  {:>13.0}  {:>13}", r.side, r.round, r.seconds, r.requests, r.generated_per_s(), synthetic);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let side = |name: &str| -> Vec<&AugmentRow> { rows.iter().filter(|r| r.side == name).collect() };
    let ratio = |a: &str, b: &str| median(side(a).iter().zip(side(b)).map(|(x, y)| x.seconds / y.seconds).collect());
    println!("pipeline overhead over raw generation: {:+.1}% (median of {rounds} paired rounds; target < 10%)", (ratio("pipeline", "raw") - 1.0) * 100.0);
    if !side("serve").is_empty() {
        println!("through dctk serve: {:.2}× the local pipeline's wall time", ratio("serve", "pipeline"));
    }
    Ok(())
}
