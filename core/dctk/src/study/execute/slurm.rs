//! The Slurm executor: a round's pending cells become **one job array**, each task running
//! `dctk cell exec runs/<id>` on its cell; the driver (`dctk run --executor slurm`) watches
//! the cells' status files, and `squeue` only to notice tasks that ended without a word.
//!
//! dctk does not schedule: Slurm does. What dctk adds is what its cells already have — ids,
//! locks, checkpoints, status files — so a task that runs twice is harmless (the second
//! finds the lock or the result), a preempted or time-limited task resumes from its
//! checkpoint, and a second driver of the same study attaches to the array the first one
//! submitted instead of submitting another.
//!
//! Per round, in `runs/.slurm/<round key>/` (the key is a hash of the round's cell ids):
//! `cells.txt` (one cell directory per array index), `job.sh` (the batch script, its
//! `#SBATCH` lines shown in the README), `array.json` (the submitted job id). Each cell keeps
//! its task's output: `runs/<id>/log.txt` (the cell's stderr) and `runs/<id>/slurm.out` (its
//! progress records, which the driver reads for step, loss and ETA).
//!
//! Time limits and preemption: the script asks for `--signal=B:USR1@S`; on USR1 the task
//! tells its cell to checkpoint and stop, then requeues itself (`scontrol requeue`), and the
//! requeued task resumes from the checkpoint once Slurm's requeue delay (its credential
//! lifetime, `cred_expire`) has passed. `scancel` (or Ctrl-C on the driver, which runs
//! it) sends SIGTERM to the cell, which checkpoints and stops; the next `dctk run` resumes it.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::progress::{CellProgress, RoundProgress};
use super::{Executor, ExecutorOptions, Job, Outcome, EXIT_STOPPED};
use crate::study::Status;

/// What each task asks Slurm for, and how the driver behaves; also the `slurm` part of a
/// study's `dctk.ron` ([`RunConfig`]), each key as the `dctk run` flag of the same name.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// CPUs of each task (`--cpus-per-task`); also the cell's libtorch threads.
    pub cpus_per_cell: Option<u32>,
    /// GPUs of each task (`--gres=gpu:N`).
    pub gpus_per_cell: Option<u32>,
    /// `--mem` of each task (`8G`).
    pub mem: Option<String>,
    /// `--time` of each task (`2:00:00`).
    pub time: Option<String>,
    /// At most this many tasks of the array at once (`%K`).
    #[serde(rename = "array_throttle")]
    pub throttle: Option<usize>,
    /// Seconds before the time limit at which a task checkpoints and requeues itself.
    #[serde(rename = "signal_before")]
    pub signal_before_s: u32,
    /// Further `#SBATCH` lines, as given (`--qos=high`).
    #[serde(rename = "sbatch")]
    pub extra: Vec<String>,
}

impl Default for SlurmOptions {
    fn default() -> SlurmOptions {
        SlurmOptions {
            partition: None,
            account: None,
            cpus_per_cell: None,
            gpus_per_cell: None,
            mem: None,
            time: None,
            throttle: None,
            signal_before_s: 120,
            extra: vec![],
        }
    }
}

/// `dctk.ron` beside a study (or the file `DCTK_CONFIG` names): where this machine runs
/// studies, kept out of the shareable script. Flags of `dctk run` override it.
///
/// ```text
/// (executor: "slurm", slurm: (partition: "gpu", gpus_per_cell: 1, cpus_per_cell: 8, time: "4:00:00", sbatch: ["--qos=high"]))
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub executor: Option<String>,
    #[serde(default)]
    pub slurm: SlurmOptions,
}

impl RunConfig {
    /// The config of a study in `study_dir`: `DCTK_CONFIG`, else `study_dir/dctk.ron`, else none.
    pub fn load(study_dir: &Path) -> Result<(RunConfig, Option<PathBuf>)> {
        let path = match std::env::var_os("DCTK_CONFIG") {
            Some(p) => PathBuf::from(p),
            None => study_dir.join("dctk.ron"),
        };
        if !path.is_file() {
            if std::env::var_os("DCTK_CONFIG").is_some() {
                bail!("DCTK_CONFIG={}: no such file", path.display());
            }
            return Ok((RunConfig::default(), None));
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        // Optional fields written plainly (`time: "4:00:00"`, not `Some("4:00:00")`).
        let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let config: RunConfig = options.from_str(&text).map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), e.span.start, e.code))?;
        Ok((config, Some(path)))
    }
}

/// Submits and watches job arrays.
pub struct SlurmExecutor(pub SlurmOptions);

/// The record of a submitted array (`array.json`).
#[derive(Serialize, Deserialize)]
struct ArrayRecord {
    job_id: String,
    cells: Vec<String>,
}

impl Executor for SlurmExecutor {
    fn run(&self, jobs: Vec<Job>, opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Vec<(Job, Outcome)> {
        match run(&self.0, &jobs, opts, cancel) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("slurm: {why}");
                jobs.into_iter().map(|j| (j, Outcome::Failed(format!("slurm: {why}")))).collect()
            }
        }
    }
}

/// `sh`-quoted, for the batch script.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The batch script of an array of `n` cells listed in `cells_file`.
pub fn job_script(o: &SlurmOptions, exe: &Path, array_dir: &Path, n: usize, threads: i32, name: &str) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |l: String| {
        s.push_str("#SBATCH ");
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("--job-name={name}"));
    line(match o.throttle {
        Some(k) => format!("--array=0-{}%{k}", n - 1),
        None => format!("--array=0-{}", n - 1),
    });
    line("--ntasks=1".into());
    line(format!("--cpus-per-task={}", o.cpus_per_cell.map_or(threads.max(1) as u32, |c| c)));
    // The shell's own errors; the cell's output goes to its directory.
    line(format!("--output={}/task-%a.out", array_dir.display()));
    line("--open-mode=append".into());
    line("--requeue".into());
    line(format!("--signal=B:USR1@{}", o.signal_before_s));
    if let Some(p) = &o.partition {
        line(format!("--partition={p}"));
    }
    if let Some(a) = &o.account {
        line(format!("--account={a}"));
    }
    if let Some(g) = o.gpus_per_cell {
        line(format!("--gres=gpu:{g}"));
    }
    if let Some(m) = &o.mem {
        line(format!("--mem={m}"));
    }
    if let Some(t) = &o.time {
        line(format!("--time={t}"));
    }
    for x in &o.extra {
        line(x.clone());
    }
    let threads = o.cpus_per_cell.map_or(threads.max(1), |c| c as i32);
    s.push_str(&format!(
        r#"set -u
# One cell per array task: line SLURM_ARRAY_TASK_ID + 1 of cells.txt.
DIR=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {cells})
requeue=0
{exe} cell exec "$DIR" --threads {threads} --progress-json >>"$DIR/slurm.out" 2>>"$DIR/log.txt" &
pid=$!
# USR1 (--signal, before the time limit or on preemption): checkpoint, stop, requeue.
trap 'requeue=1; kill -TERM $pid 2>/dev/null' USR1
# scancel's SIGTERM reaches the cell itself, which checkpoints; the shell waits for it.
trap '' TERM
while :; do wait $pid; rc=$?; kill -0 $pid 2>/dev/null || break; done
if [ "$rc" = {stopped} ] && [ "$requeue" = 1 ]; then
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit $rc
"#,
        cells = quote(&array_dir.join("cells.txt").display().to_string()),
        exe = quote(&exe.display().to_string()),
        stopped = EXIT_STOPPED,
    ));
    s
}

/// The array tasks of `job_id` still in the queue (pending, running, requeued), by index.
/// Every state is asked for, so a task between its end and its requeue (`REQUEUED`,
/// `COMPLETING`) counts as live; only ended states (and a job Slurm has forgotten) do not.
fn live_tasks(job_id: &str) -> Result<BTreeSet<usize>> {
    let out = Command::new("squeue").args(["-h", "-r", "-j", job_id, "--states=all", "-o", "%K %t"]).output().context("running squeue (is Slurm's client installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // A job that left the queue is "Invalid job id" to squeue: nothing is live.
        if err.contains("Invalid job id") {
            return Ok(BTreeSet::new());
        }
        bail!("squeue -j {job_id}: {}", err.trim());
    }
    const ENDED: [&str; 10] = ["CD", "F", "CA", "TO", "NF", "PR", "OOM", "DL", "BF", "RV"];
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let k = f.next()?.parse::<usize>().ok()?;
            (!ENDED.contains(&f.next().unwrap_or(""))).then_some(k)
        })
        .collect())
}

/// The last progress record of a cell's task (`slurm.out`), read from the file's end.
fn last_progress(dir: &Path) -> Option<serde_json::Value> {
    crate::study::last_json_line(&dir.join("slurm.out"), |v| v["event"] == "step")
}

fn log_tail(dir: &Path) -> String {
    super::local::last_lines(&dir.join("log.txt"), 5)
}

fn run(o: &SlurmOptions, jobs: &[Job], opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Result<Vec<(Job, Outcome)>> {
    let Some(first) = jobs.first() else { return Ok(vec![]) };
    let runs_root = first.dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    ids.sort_unstable();
    let key = &crate::study::content_id(&ids.iter().map(|i| i.as_bytes()).collect::<Vec<_>>())[..16];
    let array_dir = std::fs::canonicalize(&runs_root).unwrap_or(runs_root.clone()).join(".slurm").join(key);
    std::fs::create_dir_all(&array_dir).with_context(|| format!("creating {}", array_dir.display()))?;
    let dirs: Vec<PathBuf> = jobs.iter().map(|j| std::fs::canonicalize(&j.dir).unwrap_or(j.dir.clone())).collect();
    let record_path = array_dir.join("array.json");

    // One driver at a time decides whether to submit (a second one, started at the same
    // moment, then finds the first one's array and attaches to it).
    let lock = std::fs::File::create(array_dir.join("submit.lock")).with_context(|| format!("creating {}", array_dir.join("submit.lock").display()))?;
    lock.lock().with_context(|| format!("locking {}", array_dir.join("submit.lock").display()))?;
    // Attach to this round's array when an earlier driver submitted it and it still runs.
    let attached = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ArrayRecord>(&b).ok())
        .filter(|r| r.cells.len() == jobs.len())
        .filter(|r| live_tasks(&r.job_id).is_ok_and(|l| !l.is_empty()));
    let job_id = match attached {
        Some(r) => {
            eprintln!("slurm: attaching to job array {} (submitted earlier for these {} cell(s))", r.job_id, jobs.len());
            r.job_id
        }
        None => {
            let submitted = Instant::now();
            let exe = std::env::current_exe().context("locating the dctk binary for the batch script")?;
            let cells: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
            crate::study::write_atomic(&array_dir.join("cells.txt"), cells.as_bytes())?;
            let script = job_script(o, &exe, &array_dir, jobs.len(), opts.threads_per_cell, &format!("dctk-{}", &key[..8]));
            crate::study::write_atomic(&array_dir.join("job.sh"), script.as_bytes())?;
            let out = Command::new("sbatch").arg("--parsable").arg(array_dir.join("job.sh")).output().context("running sbatch (is Slurm's client installed?)")?;
            if !out.status.success() {
                bail!("sbatch {} failed: {}", array_dir.join("job.sh").display(), String::from_utf8_lossy(&out.stderr).trim());
            }
            let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
            if id.is_empty() {
                bail!("sbatch printed no job id");
            }
            let record = ArrayRecord { job_id: id.clone(), cells: jobs.iter().map(|j| j.id.clone()).collect() };
            crate::study::write_atomic(&record_path, &serde_json::to_vec(&record)?)?;
            eprintln!(
                "slurm: submitted job array {id}: {} cell(s){} in {:.2} s ({})",
                jobs.len(),
                o.throttle.map(|k| format!(", at most {k} at once")).unwrap_or_default(),
                submitted.elapsed().as_secs_f64(),
                array_dir.join("job.sh").display()
            );
            id
        }
    };
    drop(lock);
    watch(&job_id, &array_dir, jobs, &dirs, opts, cancel)
}

/// Waits for the array's cells: status files first, `squeue` every few seconds for tasks
/// that left the queue without a final status.
fn watch(job_id: &str, array_dir: &Path, jobs: &[Job], dirs: &[PathBuf], opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Result<Vec<(Job, Outcome)>> {
    let display = RoundProgress::new(opts.progress, jobs.len());
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut shown: BTreeMap<usize, CellProgress> = BTreeMap::new();
    // Tasks seen gone from the queue without a final status, at the last queue check: a
    // task between its end and its requeue is gone for a moment, so one sighting is not enough.
    let mut gone_once: BTreeSet<usize> = BTreeSet::new();
    let mut cancelled = false;
    let mut last_queue = Instant::now() - Duration::from_secs(60);
    let poll = Duration::from_millis(std::env::var("DCTK_SLURM_POLL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000));
    while outcomes.len() < jobs.len() {
        if cancel.load(Ordering::Relaxed) && !cancelled {
            cancelled = true;
            eprintln!("slurm: cancelling job array {job_id} (running cells checkpoint and stop; a rerun resumes them)");
            let _ = Command::new("scancel").arg(job_id).status();
        }
        for (i, dir) in dirs.iter().enumerate() {
            if outcomes.contains_key(&i) {
                continue;
            }
            match Status::read(dir) {
                Some(status @ (Status::Done | Status::Diverged)) => {
                    let what = status.as_str();
                    let cell = shown.remove(&i).unwrap_or_else(|| display.cell_started(&jobs[i].label, &jobs[i].id));
                    display.cell_ended(&cell, what, "", true);
                    outcomes.insert(i, Outcome::Finished);
                }
                Some(Status::Failed) => {
                    let error = std::fs::read_to_string(dir.join("error.txt")).unwrap_or_default();
                    let tail = log_tail(dir);
                    let msg = if error.trim().is_empty() { format!("failed; its log ends:\n{tail}") } else { format!("{}\nits log ends:\n{tail}", error.trim()) };
                    let cell = shown.remove(&i).unwrap_or_else(|| display.cell_started(&jobs[i].label, &jobs[i].id));
                    display.cell_ended(&cell, "failed", msg.lines().next().unwrap_or(""), false);
                    outcomes.insert(i, Outcome::Failed(msg));
                }
                Some(Status::Running) => {
                    let cell = shown.entry(i).or_insert_with(|| display.cell_started(&jobs[i].label, &jobs[i].id));
                    if let Some(p) = last_progress(dir) {
                        cell.step(p["step"].as_u64().unwrap_or(0), p["total_steps"].as_u64().unwrap_or(1), p["loss"].as_f64().unwrap_or(f64::NAN), p["tokens_per_s"].as_f64().unwrap_or(0.0));
                    }
                }
                None => {}
            }
        }
        if outcomes.len() == jobs.len() {
            break;
        }
        if last_queue.elapsed() >= Duration::from_secs(3) || cancelled {
            last_queue = Instant::now();
            // A task that requeued itself after checkpointing (time limit, preemption) is
            // pending again: it waits out Slurm's requeue delay (the credential lifetime,
            // `cred_expire`, 120 s by default) and is not to be hurried: a task restarted on
            // the same node before its old credential expires is killed ("Job credential revoked").
            let live = live_tasks(job_id)?;
            let mut now_gone = BTreeSet::new();
            for i in 0..jobs.len() {
                if outcomes.contains_key(&i) || live.contains(&i) {
                    continue;
                }
                // Gone from the queue: read the status once more (it may have just finished).
                if matches!(Status::read(&dirs[i]), Some(Status::Done | Status::Diverged | Status::Failed)) {
                    continue;
                }
                if !gone_once.contains(&i) {
                    now_gone.insert(i);
                    continue;
                }
                let cell = shown.remove(&i).unwrap_or_else(|| display.cell_started(&jobs[i].label, &jobs[i].id));
                // What the task's shell printed (a node without the binary, a bad directory).
                let shell = std::fs::read_to_string(array_dir.join(format!("task-{i}.out"))).unwrap_or_default();
                if !shell.trim().is_empty() && Status::read(&dirs[i]).is_none() {
                    let msg = format!("its Slurm task (job {job_id}, index {i}) failed before the cell started: {}", shell.trim());
                    display.cell_ended(&cell, "failed", msg.lines().next().unwrap_or(""), false);
                    outcomes.insert(i, Outcome::Failed(msg));
                } else if Status::read(&dirs[i]).is_none() {
                    display.cell_ended(&cell, "stopped", "its task left the queue before it started (scancel?); a rerun submits it again", false);
                    outcomes.insert(i, Outcome::Stopped);
                } else if dirs[i].join("ckpt").is_dir() || cancelled {
                    display.cell_ended(&cell, "stopped", "its task ended before the cell did; a rerun resumes it from its checkpoint", false);
                    outcomes.insert(i, Outcome::Stopped);
                } else {
                    let tail = log_tail(&dirs[i]);
                    let msg = format!(
                        "its Slurm task (job {job_id}, index {i}) ended without finishing the cell and left no checkpoint; see {}{}",
                        dirs[i].join("log.txt").display(),
                        if tail.is_empty() { String::new() } else { format!("; its log ends:\n{tail}") }
                    );
                    display.cell_ended(&cell, "failed", msg.lines().next().unwrap_or(""), false);
                    outcomes.insert(i, Outcome::Failed(msg));
                }
            }
            gone_once = now_gone;
        }
        display.tick();
        std::thread::sleep(poll);
    }
    display.finish();
    Ok(jobs.iter().cloned().enumerate().map(|(i, j)| (j, outcomes.remove(&i).unwrap_or(Outcome::Stopped))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_config_sets_the_executor_and_a_misspelt_key_names_itself() {
        let dir = std::env::temp_dir().join(format!("dctk-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(RunConfig::load(&dir).unwrap().1.is_none());
        std::fs::write(dir.join("dctk.ron"), "(executor: \"slurm\", slurm: (partition: \"gpu\", cpus_per_cell: 8, sbatch: [\"--qos=high\"]))").unwrap();
        let (c, path) = RunConfig::load(&dir).unwrap();
        assert_eq!(path.unwrap(), dir.join("dctk.ron"));
        assert_eq!((c.executor.as_deref(), c.slurm.partition.as_deref(), c.slurm.cpus_per_cell), (Some("slurm"), Some("gpu"), Some(8)));
        assert_eq!((c.slurm.extra.as_slice(), c.slurm.signal_before_s), (["--qos=high".to_string()].as_slice(), 120));
        std::fs::write(dir.join("dctk.ron"), "(slurm: (partitio: \"gpu\"))").unwrap();
        let err = RunConfig::load(&dir).unwrap_err().to_string();
        assert!(err.contains("dctk.ron:1:") && err.contains("partitio"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_batch_script_asks_for_what_was_set_and_requeues_on_usr1() {
        let mut o = SlurmOptions::default();
        o.partition = Some("gpu".into());
        o.gpus_per_cell = Some(1);
        o.cpus_per_cell = Some(8);
        o.time = Some("4:00:00".into());
        o.throttle = Some(16);
        o.extra = vec!["--qos=high".into()];
        let s = job_script(&o, Path::new("/opt/dctk"), Path::new("/runs/.slurm/k"), 320, 2, "dctk-k");
        for line in ["#SBATCH --array=0-319%16", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu", "#SBATCH --time=4:00:00", "#SBATCH --qos=high", "#SBATCH --signal=B:USR1@120", "#SBATCH --requeue"] {
            assert!(s.contains(line), "{line} missing in\n{s}");
        }
        assert!(s.contains("'/opt/dctk' cell exec \"$DIR\" --threads 8"));
        assert!(s.contains("scontrol requeue"));
        assert!(!s.contains("--account"));
    }
}
