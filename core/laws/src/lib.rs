//! # dctk-laws: scaling-law forms and a robust multi-start fitter
//!
//! The part of dctk that turns small training runs into decisions, with no
//! libtorch dependency.
//!
//! - [`law::LawForm`]: the one trait built-in, plugin and script laws
//!   implement (parameters with bounds, inputs, default grid, vectorised
//!   prediction, optional analytic Jacobian).
//! - [`laws`]: the built-in forms — Chinchilla (LSE parameterisation),
//!   Kaplan, Muennighoff (data-constrained), BiMix, Ye et al.'s mixing law,
//!   the power law with asymptote — a registry by name, and [`laws::ExprLaw`]
//!   for laws written as a Rhai expression.
//! - [`fit()`]: Huber or least squares on ln or raw residuals; a grid of starts,
//!   each through bounded L-BFGS ([`optim`]), in parallel; frozen
//!   parameters; the Huber-likelihood MLE; seeded parallel bootstrap.
//! - [`evaluate()`]: a law at given parameters (a published fit) on data: predictions,
//!   residuals and metrics each named by its scale (R² on the loss scale, RSS in which space,
//!   ARE), the same [`Metrics`] every fit report carries.
//! - [`decide`]: held-out extrapolation error, model comparison (AIC/BIC),
//!   compute-optimal allocation, effective-data multiplier;
//!   [`hitchhiker`](mod@hitchhiker): the fit-on-checkpoints protocol.
//! - [`data::Points`] (CSV with column mapping, or in-memory rows),
//!   [`report::FitReport`] (text, JSON; pure data), [`plot`] (its SVG plots), [`spec::FitSpec`] (the
//!   shared request format of `dctk fit` and Rhai `fit()`).
//!
//! ```no_run
//! use dctk_laws::{ColumnMap, FitOptions, Points, builtin, fit, LawOptions};
//! let map = ColumnMap::parse("N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss")?;
//! let points = Points::from_csv("data.csv", &map)?;
//! let f = fit(builtin("chinchilla", &LawOptions::default())?, &points, &FitOptions::default())?;
//! println!("{}", f.report.to_text());
//! # Ok::<(), dctk_laws::LawError>(())
//! ```

pub mod data;
pub mod decide;
pub mod diagnose;
pub mod efficiency;
pub mod error;
pub mod evaluate;
pub mod fastmath;
pub mod fit;
pub mod hitchhiker;
pub mod lanes;
pub mod law;
pub mod laws;
pub mod mixture;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod report;
pub mod simd;
pub mod spec;

pub use data::{parse_number, read_csv_cells, Column, ColumnMap, Points};
pub use decide::{compare, compute_optimal, compute_optimal_from_fit, effective_data_multiplier, extrapolation_error, held_out_error, held_out_fit, ComputeOptimal, HeldOut, Multiplier};
pub use efficiency::{data_efficiency, DataEfficiency};
pub use error::{LawError, Result};
pub use evaluate::{evaluate, params_by_name, Evaluation, FitSpace, Metrics};
pub use fit::{fit, objective_value, BootstrapOptions, Fit, FitOptions, Method, Prediction};
pub use hitchhiker::{hitchhiker, Curve, FinalOnly, HeldOutPoint, HitchhikerOptions, HitchhikerResult};
pub use law::{Inputs, LawForm, Loss, Objective, ParamSpec, Space};
pub use laws::{builtin, ExprLaw, LawOptions, BUILTIN_LAWS};
pub use mixture::{evaluate_mixture, optimize_bimix, optimize_mixture, optimize_mixture_and_steps, MixDomain, MixtureOptimum};
pub use optim::LbfgsOptions;
pub use progress::{FitPhase, FitProgress, ProgressHook};
pub use report::{Diagnostics, Direction, FitReport, FitWarning, Identifiability, Interval, Optimum, WarningKind};
pub use spec::{evenly_spaced, grid_from_axes, grid_from_csv, in_group, in_thread_pool, FitSpec};
