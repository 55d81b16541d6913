//! Executors: how the pending cells of a round get run. Each cell is executed by one
//! `dctk cell exec runs/<id>` process ([`crate::study::exec_cell`]); an executor decides
//! where and how many at once. [`local`] runs them on this machine; a cluster executor
//! (Slurm job arrays) implements the same [`Executor`] seam.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub mod local;
pub mod progress;

pub use local::LocalExecutor;
pub use progress::ProgressMode;

/// Runs a round's pending cells to completion (or until `cancel` is set).
pub trait Executor {
    /// Each job's outcome, in the order they ended.
    fn run(&self, jobs: Vec<Job>, opts: &ExecutorOptions, cancel: &Arc<AtomicBool>) -> Vec<(Job, Outcome)>;
}

/// Exit codes of `dctk cell exec`.
pub const EXIT_FAILED: i32 = 2;
pub const EXIT_STOPPED: i32 = 3;
pub const EXIT_BUSY: i32 = 75;

/// How to execute cells.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// Cells run at once.
    pub jobs: usize,
    /// libtorch CPU threads of each cell process.
    pub threads_per_cell: i32,
    /// Bars, lines or nothing ([`ProgressMode::detect`]).
    pub progress: ProgressMode,
    /// Stop launching and interrupt running cells at the first failure.
    pub fail_fast: bool,
    /// Forwarded to each cell (tests of resume).
    pub stop_after_steps: Option<u64>,
}

impl ExecutorOptions {
    /// `jobs` cells in parallel sharing `threads` CPU threads (0 = all cores).
    pub fn new(jobs: usize, threads: usize, progress: ProgressMode, fail_fast: bool) -> ExecutorOptions {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let jobs = jobs.max(1);
        ExecutorOptions { jobs, threads_per_cell: (threads / jobs).max(1) as i32, progress, fail_fast, stop_after_steps: None }
    }
}

/// One cell to run.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub label: String,
    pub dir: PathBuf,
    /// The planning study's `threads` for this cell, when it set one (it overrides the
    /// executor's split; it is not in the manifest, see [`crate::study::plan`]).
    pub threads: Option<i32>,
}

/// How a cell's process ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Finished here (done or diverged: its status file says which).
    Finished,
    /// Another process finished it while this one waited for its lock.
    FinishedElsewhere,
    Failed(String),
    /// Stopped before its end (cancelled, or `--stop-after-steps`): resumable.
    Stopped,
}

