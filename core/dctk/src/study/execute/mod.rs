//! Executors: how the pending cells of a round get run. Each cell is executed by one
//! `dctk cell exec runs/<id>` process ([`crate::study::exec_cell`]); an executor decides
//! where and how many at once. [`local`] runs them on this machine; a cluster executor
//! [`slurm`] submits each round as one Slurm job array and watches it.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub mod local;
pub mod progress;
pub mod slurm;

pub use local::LocalExecutor;
pub use progress::ProgressMode;
pub use slurm::{SlurmExecutor, SlurmOptions};

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
    /// Where cells run: this machine, or a Slurm cluster.
    pub kind: ExecutorKind,
    /// GPUs the local executor hands out, one per cell process (`CUDA_VISIBLE_DEVICES`
    /// values); empty on the CPU.
    pub gpus: Vec<String>,
}

/// The GPUs of this machine as `CUDA_VISIBLE_DEVICES` values: those the variable already
/// lists, else 0..n-1 of the devices libtorch sees; none without CUDA.
pub fn visible_gpus() -> Vec<String> {
    if !tch::Cuda::is_available() {
        return vec![];
    }
    gpu_list(std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(), tch::Cuda::device_count().max(0) as usize)
}

/// [`visible_gpus`] from the variable's value and the device count.
pub fn gpu_list(visible: Option<&str>, count: usize) -> Vec<String> {
    match visible.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v.split(',').map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).take(count).collect(),
        None => (0..count).map(|i| i.to_string()).collect(),
    }
}

/// Which executor runs a study's rounds.
#[derive(Clone, Debug, Default)]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm(SlurmOptions),
}

impl ExecutorKind {
    /// The executor itself.
    pub fn executor(&self) -> Box<dyn Executor> {
        match self {
            ExecutorKind::Local => Box::new(LocalExecutor),
            ExecutorKind::Slurm(o) => Box::new(SlurmExecutor(o.clone())),
        }
    }
}

impl ExecutorOptions {
    /// `jobs` cells in parallel sharing `threads` CPU threads (0 = all cores).
    pub fn new(jobs: usize, threads: usize, progress: ProgressMode, fail_fast: bool) -> ExecutorOptions {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let jobs = jobs.max(1);
        ExecutorOptions { jobs, threads_per_cell: (threads / jobs).max(1) as i32, progress, fail_fast, stop_after_steps: None, kind: ExecutorKind::Local, gpus: vec![] }
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


#[cfg(test)]
mod tests {
    use super::gpu_list;

    #[test]
    fn each_cell_gets_one_of_the_visible_gpus() {
        assert_eq!(gpu_list(None, 4), ["0", "1", "2", "3"]);
        assert_eq!(gpu_list(Some("3,5"), 2), ["3", "5"]);
        assert_eq!(gpu_list(Some(" "), 2), ["0", "1"]);
        assert!(gpu_list(None, 0).is_empty());
    }
}
