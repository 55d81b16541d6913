//! The rounds of a study: run the script (which plans cells), execute the cells it
//! planned, run the script again, until a pass completes with every cell it reads
//! finished.
//!
//! How "scripts plan, Rust executes" works with ordinary-looking code: `train(...)` never
//! trains. It plans a cell and returns a handle at once. Reading a result from a handle
//! whose cell is finished gives the number; reading one whose cell is pending is a
//! *barrier*: the pass stops there, every cell planned so far runs (in parallel), and the
//! script runs again from the top, now finding those cells finished. A script is cheap and
//! deterministic, so rerunning it is free; its `print` output is shown once, in the final
//! pass's order, each line as soon as a pass first reaches it (`Session::print`), and kept
//! in the study record (`output.txt`). Writing all `train` calls before reading any result (e.g. `sweep(...)` then a
//! table) puts a whole grid in one parallel round.
use std::sync::atomic::Ordering;

use super::execute::{Executor, Job, Outcome};
use super::session::Session;
use crate::study::cache::CellState;

/// An error of one pass of the script (positioned, as the Rhai binding reports it).
pub type PassError = Box<dyn std::error::Error + Send + Sync>;

/// How a pass of the script ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundEnd {
    Complete,
    /// Stopped at a pending result at (line, column).
    Barrier(usize, usize),
}

/// What a finished `dctk run` did.
pub struct RunSummary {
    pub rounds: usize,
    /// Cells this invocation trained (to their end).
    pub executed: usize,
    /// Cells another process was running when this one reached them, waited for.
    pub waited: usize,
    /// Cells that failed (label, id, message).
    pub failed: Vec<(String, String, String)>,
}

/// Why a study stopped.
#[derive(Debug)]
pub enum StudyError {
    Script(PassError),
    /// Cells stopped before their end (cancelled, or `--stop-after-steps`).
    Stopped(usize),
    Other(anyhow::Error),
}

impl std::fmt::Display for StudyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyError::Script(e) => e.fmt(f),
            StudyError::Stopped(n) => write!(f, "stopped with {n} cell(s) unfinished (checkpointed); run the study again to resume"),
            StudyError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for StudyError {}

/// The end of the study's output: see [`Session::finish_output`].
pub fn flush_output(s: &Session) {
    s.finish_output();
}

/// Runs passes of the script (`pass`) and the cells they plan (on `executor`) until the
/// script completes. `after_first_round` sees the session once the first pass has
/// planned its cells (the bundle check).
pub fn run(
    s: &Session,
    executor: &dyn Executor,
    pass: &mut dyn FnMut() -> Result<RoundEnd, PassError>,
    after_first_round: &mut dyn FnMut(&Session),
) -> Result<RunSummary, StudyError> {
    let (mut rounds, mut executed, mut waited) = (0, 0, 0);
    loop {
        rounds += 1;
        let end = pass();
        if rounds == 1 {
            after_first_round(s);
        }
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                flush_output(s);
                return Err(StudyError::Script(e));
            }
        };
        let pending = s.pending();
        if pending.is_empty() {
            if let RoundEnd::Barrier(line, column) = end {
                // Cannot happen (a barrier is a read of a pending cell), but never loop.
                return Err(StudyError::Other(anyhow::anyhow!("{}:{line}:{column}: stopped at a pending result with nothing to run", s.script.display())));
            }
            flush_output(s);
            let failed: Vec<(String, String, String)> = s
                .cells
                .lock()
                .unwrap()
                .values()
                .filter_map(|e| match &e.state {
                    CellState::Failed(m) => Some((e.cell.label().to_string(), e.cell.id().to_string(), m.clone())),
                    _ => None,
                })
                .collect();
            return Ok(RunSummary { rounds, executed, waited, failed });
        }
        // Cells may now train for hours: keep what this pass printed in the record first.
        s.save_output(&s.output.lock().unwrap());
        let mut jobs = Vec::new();
        for cell in &pending {
            cell.materialize().map_err(StudyError::Other)?;
            jobs.push(Job { id: cell.id().to_string(), label: cell.label().to_string(), dir: cell.dir_buf(), threads: cell.threads() });
        }
        let outcomes = executor.run(jobs, &s.opts.executor, &s.opts.cancel);
        executed += outcomes.iter().filter(|(_, o)| *o == Outcome::Finished).count();
        waited += outcomes.iter().filter(|(_, o)| *o == Outcome::FinishedElsewhere).count();
        let stopped = outcomes.iter().filter(|(_, o)| *o == Outcome::Stopped).count();
        for (job, o) in &outcomes {
            if let Outcome::Failed(why) = o {
                s.failed_here.lock().unwrap().insert(job.id.clone(), why.clone());
            }
        }
        if s.opts.executor.fail_fast {
            if let Some((job, Outcome::Failed(msg))) = outcomes.iter().find(|(_, o)| matches!(o, Outcome::Failed(_))) {
                return Err(StudyError::Other(anyhow::anyhow!(
                    "cell {} ({}) failed: {}\n--fail-fast: the study stopped; other running cells were checkpointed ({stopped} stopped) and resume on the next run; `dctk run --rerun-failed` retries the failed one",
                    job.label,
                    job.id,
                    msg.lines().next().unwrap_or("")
                )));
            }
        }
        if stopped > 0 || s.opts.cancel.load(Ordering::Relaxed) {
            return Err(StudyError::Stopped(stopped.max(1)));
        }
    }
}
