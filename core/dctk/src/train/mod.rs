//! Training on libtorch: the model, its optimizer and schedule, the step, the loop,
//! evaluation, results and checkpoints.
//!
//! Read in this order: `spec` (what a run is), `plan` (how it is laid out in steps), `shape`
//! (a model's configuration), `model` (the network), `head` (its fused, chunked loss), `optim`
//! and `schedule` (how it learns), `step` (one optimizer update), `eval` (validation),
//! `placement` and `trainer` (the loop), `results` (what a run produces), `checkpoint` (how
//! it resumes), `accounting` (real versus synthetic tokens).
//!
//! The libtorch-free build (dctk-lite) has the plain-data half: spec, plan, shape,
//! placement, schedule, results, accounting and the checkpoint's state file; `model` and
//! `trainer` there only re-export it.
pub mod accounting;
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod eval;
#[cfg(feature = "torch")]
pub mod head;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod optim;
pub mod placement;
pub mod plan;
pub mod results;
pub mod schedule;
pub mod shape;
pub mod spec;
#[cfg(feature = "torch")]
pub mod step;
#[cfg(feature = "torch")]
pub mod trainer;
#[cfg(all(test, feature = "torch"))]
mod tests;

/// The libtorch-free build's `model`: the shapes only.
#[cfg(not(feature = "torch"))]
pub mod model {
    pub use super::shape::*;
}

/// The libtorch-free build's `trainer`: what the planner takes from it.
#[cfg(not(feature = "torch"))]
pub mod trainer {
    pub use super::placement::{precision_name, resolve_placement, ExecOptions, StoppedEarly};
    pub use super::plan::RunPlan;
}

pub use accounting::RealSyntheticAccounting;
#[cfg(feature = "torch")]
pub use model::Gpt;
pub use placement::ExecOptions;
pub use plan::RunPlan;
pub use results::{EvalPoint, RunResult};
pub use shape::ModelConfig;
pub use spec::TrainSpec;
#[cfg(feature = "torch")]
pub use step::{train_step, BatchTensors, PendingStep, StepOutcome, StepSettings};
