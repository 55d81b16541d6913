//! The study cache: which cells are done (reused wherever their id appears), failed,
//! interrupted (resumable from their checkpoint) or busy (another process holds their
//! lock), read from `runs/<id>/`, and what a plan does with each ([`reuse`]).
//!
//! A cell's directory is named by its id, a hash of everything that decides its numbers
//! ([`crate::study::inputs`]), so "is it cached?" is "does `runs/<id>/` say done?".
//! Locks are [`crate::study::lock`]'s.
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::inputs::{diff, CellInputs, Change};
use super::lock::CellLock;
use super::generate_cell::GenerateResult;
use super::plan::{AcceptedCodeChange, TrainCell};
use super::{write_atomic, write_record, Status};
use crate::train::RunResult;

/// Where a cell stands on disk.
#[derive(Clone, Debug)]
pub enum CellState {
    /// Never started here.
    New,
    /// Finished: its result (status `done` or `diverged`).
    Finished(Box<RunResult>),
    /// A generation cell, finished: its result.
    Generated(Box<GenerateResult>),
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
            Some(Status::Done | Status::Diverged) => {
                let text = fs::read_to_string(dir.join("result.ron")).ok();
                // The two kinds' results have disjoint required fields: at most one parses.
                let Some(text) = text else { return CellState::Interrupted(checkpoint_step(dir)) };
                if let Ok(r) = ron::from_str::<RunResult>(&text) {
                    CellState::Finished(Box::new(r))
                } else if let Ok(g) = ron::from_str::<GenerateResult>(&text) {
                    CellState::Generated(Box::new(g))
                } else {
                    CellState::Interrupted(checkpoint_step(dir))
                }
            }
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
            CellState::Finished(_) | CellState::Generated(_) => "done",
            CellState::Failed(_) => "failed",
            CellState::Interrupted(_) => "interrupted",
            CellState::Busy(_) => "running",
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, CellState::Finished(_) | CellState::Generated(_))
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
        (s @ (CellState::Finished(_) | CellState::Generated(_)), _) => (s, false),
        (s @ CellState::Failed(_), None) => (s, rerun_failed),
        (s @ CellState::Failed(_), Some(_)) => (s, false),
        (_, Some(why)) => (CellState::Failed(why), false),
        (s @ (CellState::New | CellState::Interrupted(_) | CellState::Busy(_)), None) => (s, true),
    }
}

/// What to tell a user about a cell that failed in this invocation: a cell whose process
/// said `failed` runs again with `--rerun-failed`; one whose process was killed before it
/// could (a signal, the OOM killer) is interrupted on disk, and a plain rerun resumes it.
pub fn how_to_retry(dir: &Path) -> &'static str {
    if Status::read(dir) == Some(Status::Failed) {
        "`dctk run --rerun-failed` tries it again"
    } else {
        "it is not marked failed on disk: run the study again to resume it from its checkpoint"
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

/// The inputs that name the code rather than the experiment: a cell whose inputs differ
/// from a finished one's only in these has a result of another build.
const CODE_INPUTS: &[&str] = &["version.build", "version.dctk"];

/// True when `before` and `after` differ, and only in the code's identity.
pub fn only_code_differs(before: &CellInputs, after: &CellInputs) -> bool {
    let changes = diff(before, after);
    !changes.is_empty()
        && changes.iter().all(|c| {
            let name = match c {
                Change::Changed { name, .. } | Change::Added { name, .. } | Change::Removed { name, .. } => name,
            };
            CODE_INPUTS.contains(&name.as_str())
        })
}

/// A planned cell with no result of this build whose same-label cell has a finished
/// result of another build.
#[derive(Clone, Debug)]
pub struct OtherBuild {
    pub label: String,
    pub old_id: String,
    pub new_id: String,
    /// What differs (`version.build: a → b`).
    pub changes: Vec<String>,
}

/// `--accept-code-change`: makes `cell` (this build's id) hold the finished result of
/// `old` (another build's cell with otherwise the same inputs): its manifest records
/// where the result came from, then metrics, result (with this id) and status are copied.
pub fn accept_other_build(cell: &TrainCell, old: &OtherBuild, old_dir: &Path) -> Result<()> {
    fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
    let mut manifest = cell.manifest()?;
    manifest.accepted_code_change = Some(AcceptedCodeChange { from_id: old.old_id.clone(), changes: old.changes.clone() });
    write_record(&cell.dir.join("manifest.ron"), &manifest)?;
    if let Ok(metrics) = fs::read(old_dir.join("metrics.jsonl")) {
        write_atomic(&cell.dir.join("metrics.jsonl"), &metrics)?;
    }
    let text = fs::read_to_string(old_dir.join("result.ron")).with_context(|| format!("reading {}/result.ron", old_dir.display()))?;
    let mut result: RunResult = ron::from_str(&text).with_context(|| format!("parsing {}/result.ron", old_dir.display()))?;
    result.run_id = cell.id.clone();
    result.run_dir = cell.dir.display().to_string();
    write_record(&cell.dir.join("result.ron"), &result)?;
    let status = if result.status == Status::Diverged.as_str() { Status::Diverged } else { Status::Done };
    status.write(&cell.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_build_or_version_difference_is_a_code_change() {
        let mut a = CellInputs::default();
        a.insert("spec.lr", "0.003");
        a.insert("version.build", "aaaa");
        let mut b = a.clone();
        assert!(!only_code_differs(&a, &b), "identical inputs are the same cell");
        b.insert("version.build", "bbbb");
        assert!(only_code_differs(&a, &b));
        b.insert("spec.lr", "0.004");
        assert!(!only_code_differs(&a, &b), "a setting changed too");
        let mut old = CellInputs::default();
        old.insert("spec.lr", "0.003");
        assert!(only_code_differs(&old, &a), "a record from before build identities");
    }
}

/// What [`prune_checkpoints`] did.
#[derive(Debug, Default)]
pub struct Pruned {
    pub cells: usize,
    pub bytes: u64,
    /// Cells left alone because another process holds them.
    pub busy: usize,
}

fn tree_bytes(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path).map(|d| d.flatten().map(|e| tree_bytes(&e.path())).sum()).unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// `dctk gc`: removes the checkpoints (`ckpt/`, `ckpt.tmp/`, `ckpt.old/`) of every
/// finished cell under `runs_root` — done or diverged, with its result written — never
/// of an unfinished one (its checkpoint is how it resumes). Each cell is locked while it
/// is pruned, so a cell another process is running is skipped. `dry_run` only counts.
pub fn prune_checkpoints(runs_root: &Path, dry_run: bool) -> Result<Pruned> {
    let mut out = Pruned::default();
    let entries = fs::read_dir(runs_root).with_context(|| format!("reading {}", runs_root.display()))?;
    let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.join("manifest.ron").is_file()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(_lock) = CellLock::acquire(&dir)? else {
            out.busy += 1;
            continue;
        };
        if !CellState::read(&dir).is_finished() {
            continue;
        }
        let mut freed = 0;
        for name in ["ckpt", "ckpt.tmp", "ckpt.old"] {
            let p = dir.join(name);
            if p.exists() {
                freed += tree_bytes(&p);
                if !dry_run {
                    fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
                }
            }
        }
        if freed > 0 {
            out.cells += 1;
            out.bytes += freed;
        }
    }
    Ok(out)
}
