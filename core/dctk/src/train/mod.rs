//! Training on libtorch: the model, its optimizer and schedule, checkpoints and the loop.
//!
//! Read in this order: `spec` (what a run is), `model` (the network), `optim` and
//! `schedule` (how it learns), `trainer` (the loop), `checkpoint` (how it resumes).
pub mod checkpoint;
pub mod model;
pub mod optim;
pub mod schedule;
pub mod spec;
pub mod trainer;
#[cfg(test)]
mod tests;

pub use model::{Gpt, ModelConfig};
pub use spec::TrainSpec;
pub use trainer::{EvalPoint, ExecOptions, RunPlan, RunResult};
