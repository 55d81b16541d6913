//! Training on libtorch: the model, its optimizer and schedule, the step, the loop,
//! evaluation, results and checkpoints.
//!
//! Read in this order: `spec` (what a run is), `plan` (how it is laid out in steps), `model`
//! (the network), `head` (its fused, chunked loss), `optim` and `schedule` (how it learns), `step` (one optimizer update),
//! `eval` (validation), `trainer` (the loop), `results` (what a run produces), `checkpoint`
//! (how it resumes), `accounting` (real versus synthetic tokens).
pub mod accounting;
pub mod checkpoint;
pub mod eval;
pub mod head;
pub mod model;
pub mod optim;
pub mod plan;
pub mod results;
pub mod schedule;
pub mod spec;
pub mod step;
pub mod trainer;
#[cfg(test)]
mod tests;

pub use accounting::RealSyntheticAccounting;
pub use model::{Gpt, ModelConfig};
pub use plan::RunPlan;
pub use results::{EvalPoint, RunResult};
pub use spec::TrainSpec;
pub use step::{train_step, BatchTensors, StepOutcome, StepSettings};
pub use trainer::ExecOptions;
