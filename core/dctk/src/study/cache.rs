//! The study cache: which cells are done (reused wherever their id appears), failed,
//! interrupted (resumable from their checkpoint) or busy (another process holds their
//! lock), read from `runs/<id>/`, and what a plan does with each ([`reuse`]).
//!
//! A cell's directory is named by its id, a hash of everything that decides its numbers
//! ([`crate::study::inputs`]), so "is it cached?" is "does `runs/<id>/` say done?".
//! Locks are [`crate::study::lock`]'s.
use std::fs;
use std::path::Path;

use super::lock::CellLock;
use super::Status;
use crate::train::RunResult;

/// Where a cell stands on disk.
#[derive(Clone, Debug)]
pub enum CellState {
    /// Never started here.
    New,
    /// Finished: its result (status `done` or `diverged`).
    Finished(Box<RunResult>),
    /// Failed with this message (from `error.txt`).
    Failed(String),
    /// Started, not finished, not running now: resumes from its checkpoint (at this step).
    Interrupted(Option<u64>),
    /// Another dctk process holds its lock.
    Busy(String),
}

impl CellState {
    pub fn read(dir: &Path) -> CellState {
        match Status::read(dir) {
            None => CellState::New,
            Some(Status::Done | Status::Diverged) => match fs::read_to_string(dir.join("result.ron")).ok().and_then(|t| ron::from_str::<RunResult>(&t).ok()) {
                Some(r) => CellState::Finished(Box::new(r)),
                None => CellState::Interrupted(checkpoint_step(dir)),
            },
            Some(status) => match CellLock::holder(dir) {
                Some(holder) => CellState::Busy(holder),
                None if status == Status::Failed => CellState::Failed(
                    fs::read_to_string(dir.join("error.txt")).unwrap_or_else(|_| "failed (no error.txt)".into()).trim().to_string(),
                ),
                None => CellState::Interrupted(checkpoint_step(dir)),
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CellState::New => "new",
            CellState::Finished(r) if r.status == "diverged" => "diverged",
            CellState::Finished(_) => "done",
            CellState::Failed(_) => "failed",
            CellState::Interrupted(_) => "interrupted",
            CellState::Busy(_) => "running",
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, CellState::Finished(_))
    }
}

fn checkpoint_step(dir: &Path) -> Option<u64> {
    let ckpt = crate::train::checkpoint::find(dir)?;
    crate::train::checkpoint::read_state(&ckpt).ok().map(|s| s.step)
}

/// What a plan does with a cell found in `state`: the state to show and whether to run
/// it after this round. Finished cells are reused; failed ones run again only with
/// `--rerun-failed`; a cell whose process failed in this invocation (`failed_here`, even
/// one that died before it could write `failed`) is not relaunched, or a crashing cell
/// would be relaunched forever; new, interrupted and busy cells run (a busy one is waited
/// for: the executor retries until its holder lets go).
pub fn reuse(state: CellState, failed_here: Option<String>, rerun_failed: bool) -> (CellState, bool) {
    match (state, failed_here) {
        (s @ CellState::Finished(_), _) => (s, false),
        (s @ CellState::Failed(_), None) => (s, rerun_failed),
        (s @ CellState::Failed(_), Some(_)) => (s, false),
        (_, Some(why)) => (CellState::Failed(why), false),
        (s @ (CellState::New | CellState::Interrupted(_) | CellState::Busy(_)), None) => (s, true),
    }
}

/// Another process holds the cell's lock: try again later.
#[derive(Debug)]
pub struct CellBusy(pub String);

impl std::fmt::Display for CellBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the cell is being run by another dctk ({})", self.0)
    }
}

impl std::error::Error for CellBusy {}
