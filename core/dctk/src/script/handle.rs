//! `Run`: what a script holds for a planned cell (`train`'s and `generate`'s return value).
use std::sync::Arc;

use rhai::Map;

use crate::study::cache::CellState;
use crate::study::session::PlannedRef;
use crate::train::RunResult;

/// A planned cell as the script sees it.
///
/// `run.id`, `run.label`, `run.status` and `run.run_dir` are known at once; any other key
/// (`run.final_val_loss`, `run["curve"]`, …) is the cell's result and waits for the cell.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: String,
    pub label: String,
    pub dir: String,
    pub state: RunState,
}

#[derive(Clone, Debug)]
pub enum RunState {
    Pending,
    Finished(Arc<Map>, String),
    Failed(String),
}

impl Run {
    pub fn from_planned(p: PlannedRef) -> Run {
        let state = if p.pending {
            RunState::Pending
        } else {
            match &p.state {
                CellState::Finished(r) => RunState::Finished(Arc::new(result_map(r)), r.status.clone()),
                CellState::Generated(r) => RunState::Finished(Arc::new(to_map(r.as_ref())), r.status.clone()),
                CellState::Failed(msg) => RunState::Failed(msg.clone()),
                _ => RunState::Pending,
            }
        };
        Run { id: p.id, label: p.label, dir: p.dir.display().to_string(), state }
    }

    pub fn status(&self) -> &str {
        match &self.state {
            RunState::Pending => "pending",
            RunState::Finished(_, s) => s,
            RunState::Failed(_) => "failed",
        }
    }
}

/// A run's result as a Rhai map (the fields of [`RunResult`]).
pub fn result_map(r: &RunResult) -> Map {
    to_map(r)
}

/// A result record as a Rhai map (its fields).
fn to_map<T: serde::Serialize>(r: &T) -> Map {
    rhai::serde::to_dynamic(r).ok().and_then(|d| d.try_cast::<Map>()).unwrap_or_default()
}
