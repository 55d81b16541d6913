//! How a run executes, without running it: the options that change how but not what
//! ([`ExecOptions`]), the early stop that leaves a run resumable ([`StoppedEarly`]), and the
//! device and precision a spec resolves to ([`resolve_placement`]). Torch-free (`tch` names
//! only its plain `Device` and `Kind`), so the planner shares it in both builds.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use tch::{Device, Kind};

use super::spec::TrainSpec;
use crate::env;

/// Options that change how a run executes but not its numbers.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Print one JSON object per step and evaluation on stdout (`{"event": "step", ...}`):
    /// how a cell process reports progress to the `dctk run` that launched it.
    pub progress_json: bool,
    /// Stop (as if killed) after this many steps of this process: for tests and demos
    /// of resume. The run is left resumable, not finished.
    pub stop_after_steps: Option<u64>,
    /// Set (by Ctrl-C or `--fail-fast`) to stop: the run checkpoints where it is and
    /// returns [`StoppedEarly`], so no finished step is lost.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The run stopped before its end, on request (`--stop-after-steps`) or on
/// cancellation: it is left resumable, not failed.
#[derive(Debug)]
pub struct StoppedEarly {
    pub steps: u64,
    pub cancelled: bool,
}

impl std::fmt::Display for StoppedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cancelled {
            write!(f, "cancelled after {} steps, checkpointed; rerun to resume", self.steps)
        } else {
            write!(f, "stopped after {} steps as requested (--stop-after-steps); rerun to resume", self.steps)
        }
    }
}

impl std::error::Error for StoppedEarly {}

/// Resolved device and precision for a spec.
pub fn resolve_placement(spec: &TrainSpec) -> Result<(Device, Kind)> {
    let device = env::resolve_device(&spec.device).map_err(anyhow::Error::msg)?;
    let kind = match (spec.precision.as_str(), device) {
        ("bf16", _) => Kind::BFloat16,
        ("fp32", _) => Kind::Float,
        (_, Device::Cuda(_)) => Kind::BFloat16,
        _ => Kind::Float,
    };
    Ok((device, kind))
}

pub fn precision_name(kind: Kind) -> &'static str {
    if kind == Kind::BFloat16 {
        "bf16"
    } else {
        "fp32"
    }
}
