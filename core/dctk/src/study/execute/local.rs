//! The local executor: runs pending cells on this machine, each in its own
//! `dctk cell exec` process, `jobs` at a time, showing their progress ([`super::progress`]:
//! bars on a terminal, lines in a log).
//!
//! Why processes and not threads: libtorch keeps process-wide state that decides numbers
//! (the default RNG that `manual_seed` resets each step, the intra-op thread count), so two
//! cells in one process would perturb each other; a process per cell gives every cell the
//! same bits whether it runs alone or beside others, isolates a crashing plugin to its
//! cell, and is the same unit a Slurm job array runs (`dctk cell exec runs/<id>`).
//!
//! On a machine with CUDA GPUs, each cell process gets one GPU of its own
//! (`CUDA_VISIBLE_DEVICES`, so it sees it as `cuda:0`), and `-j` defaults to the number of
//! GPUs. On the CPU, `threads` are split evenly across `jobs`; the split is fixed for the whole
//! study (not re-balanced when fewer cells remain), because the thread count changes
//! reduction order and hence the bits. Cell processes die with their parent
//! (`PR_SET_PDEATHSIG`), so a killed `dctk run` leaves no orphan training behind, and a
//! cell's flock is released with its process.
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use super::progress::{CellProgress, RoundProgress};
use super::{Executor, ExecutorOptions, Job, Outcome, EXIT_BUSY, EXIT_STOPPED};

/// Cell processes on this machine.
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn run(&self, jobs: Vec<Job>, opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Vec<(Job, Outcome)> {
        run(jobs, opts, cancel)
    }
}

struct Running {
    job: Job,
    child: Child,
    progress: CellProgress,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The cell process found the cell finished by another process (it waited for it).
    finished_elsewhere: Arc<AtomicBool>,
    /// The error the cell process reported on its pipe (it reaches us on a full disk).
    error: Arc<Mutex<Option<String>>>,
    /// The GPU this cell process was given (its `CUDA_VISIBLE_DEVICES`), back to the pool when it ends.
    gpu: Option<String>,
}

/// Runs `jobs` to completion (or until `cancel` is set), returning each job's outcome.
pub fn run(jobs: Vec<Job>, opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Vec<(Job, Outcome)> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("dctk"));
    let display = RoundProgress::new(opts.progress, jobs.len());
    let mut queue: VecDeque<(Job, Instant)> = jobs.into_iter().map(|j| (j, Instant::now())).collect();
    let mut running: Vec<Running> = Vec::new();
    let mut outcomes = Vec::new();
    let mut stopping = false;
    // One GPU per cell process: each gets one of these as its CUDA_VISIBLE_DEVICES.
    let mut free_gpus: VecDeque<String> = opts.gpus.iter().cloned().collect();

    loop {
        if cancel.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            for r in &running {
                // The cell checkpoints where it is and exits as "stopped".
                unsafe { libc::kill(r.child.id() as i32, libc::SIGINT) };
            }
        }
        if stopping {
            for (job, _) in queue.drain(..) {
                outcomes.push((job, Outcome::Stopped));
            }
        }
        // Launch what fits, skipping cells that wait for another process's lock.
        let mut deferred = VecDeque::new();
        while running.len() < opts.jobs {
            let Some((job, not_before)) = queue.pop_front() else { break };
            if not_before > Instant::now() {
                deferred.push_back((job, not_before));
                continue;
            }
            let gpu = if opts.gpus.is_empty() {
                None
            } else {
                match free_gpus.pop_front() {
                    Some(g) => Some(g),
                    None => {
                        deferred.push_back((job, not_before));
                        break;
                    }
                }
            };
            match launch(&exe, &job, opts, &display, gpu.clone()) {
                Ok(r) => running.push(r),
                Err(e) => {
                    free_gpus.extend(gpu);
                    outcomes.push((job, Outcome::Failed(format!("cannot start a cell process: {e}"))));
                }
            }
        }
        queue.extend(deferred);
        if running.is_empty() && queue.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        display.tick();
        let mut i = 0;
        while i < running.len() {
            let status = match running[i].child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(e) => {
                    eprintln!("warning: waiting for cell {}: {e}", running[i].job.id);
                    i += 1;
                    continue;
                }
            };
            let mut r = running.swap_remove(i);
            if let Some(h) = r.reader.take() {
                let _ = h.join();
            }
            free_gpus.extend(r.gpu.take());
            let outcome = match status.code() {
                Some(0) if r.finished_elsewhere.load(Ordering::Relaxed) => Outcome::FinishedElsewhere,
                Some(0) => Outcome::Finished,
                Some(EXIT_STOPPED) => Outcome::Stopped,
                Some(EXIT_BUSY) => {
                    // Another dctk runs this cell: look again in a second; its result (or
                    // its interruption) will be there.
                    queue.push_back((r.job, Instant::now() + Duration::from_secs(1)));
                    continue;
                }
                code => {
                    let error = std::fs::read_to_string(r.job.dir.join("error.txt")).unwrap_or_default();
                    let reported = r.error.lock().unwrap().take();
                    Outcome::Failed(if !error.trim().is_empty() {
                        error.trim().to_string()
                    } else if let Some(message) = reported {
                        // error.txt could not be written (a full disk): the cell said why on its pipe.
                        message
                    } else {
                        let log = r.job.dir.join("log.txt");
                        let tail = last_lines(&log, 5);
                        let tail = if tail.is_empty() { String::new() } else { format!("; its log ends:\n{tail}") };
                        match (code, status.signal()) {
                            (Some(c), _) => format!("the cell process exited with code {c}; see {}{tail}", log.display()),
                            (None, Some(sig)) => format!(
                                "the cell process was killed by a signal ({}); its checkpoint is kept and a plain rerun resumes it; see {}{tail}",
                                signal_name(sig),
                                log.display()
                            ),
                            (None, None) => format!("the cell process ended without an exit code; see {}{tail}", log.display()),
                        }
                    })
                }
            };
            match &outcome {
                Outcome::Failed(msg) => {
                    display.cell_ended(&r.progress, "failed", first_line(msg), false);
                    if opts.fail_fast {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Outcome::Finished => {
                    let status = crate::study::Status::read(&r.job.dir);
                    let what = if status == Some(crate::study::Status::Diverged) { "diverged" } else { "done" };
                    display.cell_ended(&r.progress, what, &final_loss(&r.job.dir), true);
                }
                Outcome::FinishedElsewhere => display.cell_ended(&r.progress, "done", "finished by another dctk", true),
                Outcome::Stopped => display.cell_ended(&r.progress, "stopped", "checkpointed; a rerun resumes it", false),
            }
            outcomes.push((r.job, outcome));
        }
    }
    display.finish();
    outcomes
}

/// `val_loss 6.1234` from a finished cell's result (empty when it has none).
fn final_loss(dir: &std::path::Path) -> String {
    let Ok(text) = std::fs::read_to_string(dir.join("result.json")) else { return String::new() };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return String::new() };
    v.get("final_val_loss").and_then(|x| x.as_f64()).map(|x| format!("final val_loss {x:.4}")).unwrap_or_default()
}

/// The last `n` lines of a log file (empty when it is missing or empty).
pub(super) fn last_lines(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// `SIGKILL` for 9, and so on (the signals that end cell processes in practice).
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn launch(exe: &PathBuf, job: &Job, opts: &ExecutorOptions, display: &RoundProgress, gpu: Option<String>) -> std::io::Result<Running> {
    std::fs::create_dir_all(&job.dir)?;
    let log = OpenOptions::new().create(true).append(true).open(job.dir.join("log.txt"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("cell").arg("exec").arg(&job.dir).arg("--threads").arg(job.threads.unwrap_or(opts.threads_per_cell).to_string()).arg("--progress-json");
    if let Some(n) = opts.stop_after_steps {
        cmd.arg("--stop-after-steps").arg(n.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
    if let Some(g) = &gpu {
        // The cell sees one GPU, as cuda:0.
        cmd.env("CUDA_VISIBLE_DEVICES", g);
    }
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group: a terminal's Ctrl-C reaches `dctk run` alone, which
            // forwards exactly one SIGINT (checkpoint and stop); a second Ctrl-C ends
            // `dctk run` at once and, through PDEATHSIG, its cells.
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                // The parent died before prctl took effect.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let progress = display.cell_started(&job.label, &job.id);
    let stdout = child.stdout.take().unwrap();
    let p = progress.clone();
    let finished_elsewhere = Arc::new(AtomicBool::new(false));
    let elsewhere = finished_elsewhere.clone();
    let error = Arc::new(Mutex::new(None));
    let reported = error.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                p.println(&line);
                continue;
            };
            match v["event"].as_str() {
                Some("already_finished") => elsewhere.store(true, Ordering::Relaxed),
                Some("error") => *reported.lock().unwrap() = v["message"].as_str().map(String::from),
                Some("requests") => {
                    // A generation cell: requests answered (from the cache or the backend).
                    p.requests(v["done"].as_u64().unwrap_or(0), v["total"].as_u64().unwrap_or(1));
                }
                Some("step") => {
                    p.step(
                        v["step"].as_u64().unwrap_or(0),
                        v["total_steps"].as_u64().unwrap_or(1),
                        v["loss"].as_f64().unwrap_or(f64::NAN),
                        v["tokens_per_s"].as_f64().unwrap_or(0.0),
                    );
                }
                Some("eval") => {
                    p.eval(v["step"].as_u64().unwrap_or(0), v["epoch"].as_f64().unwrap_or(0.0), v["val_loss"].as_f64().unwrap_or(f64::NAN));
                }
                _ => {}
            }
        }
    });
    Ok(Running { job: job.clone(), child, progress, reader: Some(reader), finished_elsewhere, error, gpu })
}
