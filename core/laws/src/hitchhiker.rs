//! The Hitchhiker's-guide protocol (Choshen, Zhang, Andreas 2024, "A
//! Hitchhiker's Guide to Scaling Law Estimation", arXiv 2410.11840; IBM/ColPret
//! `util/fit_utils.py::hist_fit`): fit a law on the intermediate checkpoints of
//! the smaller models of a family, and score it on the last 30% of the
//! largest (target) model's training.
//!
//! Each checkpoint is one (N, T, loss) point with T the tokens seen at that
//! checkpoint; checkpoints before `cut_beginning` tokens (1e10) are dropped
//! from training, and the smaller models can be cut to the first fraction p
//! of their training.

use crate::data::Points;
use crate::decide::{held_out_error, HeldOut};
use crate::error::{LawError, Result};
use crate::fit::FitOptions;
use crate::law::LawForm;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One run's validation-loss curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Curve {
    pub name: String,
    /// Model size N (parameters).
    pub params: f64,
    /// Tokens seen at each logged checkpoint.
    pub tokens: Vec<f64>,
    /// Validation loss at each checkpoint.
    pub loss: Vec<f64>,
}

/// Protocol settings (defaults are the paper's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HitchhikerOptions {
    /// Drop training checkpoints before this many tokens (1e10).
    pub cut_beginning_tokens: f64,
    /// Use the first `train_fraction` of each smaller model's training (1.0).
    pub train_fraction: f64,
    /// Score the target's checkpoints from this fraction of its training on (0.7).
    pub test_from_fraction: f64,
}

impl Default for HitchhikerOptions {
    fn default() -> Self {
        HitchhikerOptions { cut_beginning_tokens: 1e10, train_fraction: 1.0, test_from_fraction: 0.7 }
    }
}

/// Protocol outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitchhikerResult {
    pub target: String,
    pub held_out: HeldOut,
}

/// Build (train, test) points: columns `N` (params) and `D` (tokens seen).
pub fn hitchhiker_split(curves: &[Curve], opts: &HitchhikerOptions) -> Result<(Points, Points, String)> {
    if curves.len() < 2 {
        return Err(LawError::BadOption(format!("the protocol needs at least 2 runs (a target and smaller models), got {}", curves.len())));
    }
    for c in curves {
        if c.tokens.len() != c.loss.len() {
            return Err(LawError::BadOption(format!("run '{}': {} token counts but {} losses", c.name, c.tokens.len(), c.loss.len())));
        }
        if c.tokens.is_empty() {
            return Err(LawError::BadOption(format!("run '{}' has no checkpoints", c.name)));
        }
    }
    let max_n = curves.iter().map(|c| c.params).fold(f64::NEG_INFINITY, f64::max);
    let (mut tr_n, mut tr_d, mut tr_y) = (vec![], vec![], vec![]);
    let (mut te_n, mut te_d, mut te_y) = (vec![], vec![], vec![]);
    let mut target = String::new();
    for c in curves {
        let total = c.tokens.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if c.params == max_n {
            target = c.name.clone();
            for (t, y) in c.tokens.iter().zip(&c.loss) {
                if *t >= opts.test_from_fraction * total {
                    te_n.push(c.params);
                    te_d.push(*t);
                    te_y.push(*y);
                }
            }
        } else {
            for (t, y) in c.tokens.iter().zip(&c.loss) {
                if *t >= opts.cut_beginning_tokens && *t <= opts.train_fraction * total {
                    tr_n.push(c.params);
                    tr_d.push(*t);
                    tr_y.push(*y);
                }
            }
        }
    }
    let train = Points::from_columns(vec![("N".into(), tr_n), ("D".into(), tr_d)], tr_y)?;
    let test = Points::from_columns(vec![("N".into(), te_n), ("D".into(), te_d)], te_y)?;
    Ok((train, test, target))
}

/// Run the protocol with `law` (inputs `N`, `D`): fit on the smaller
/// models' checkpoints, report the absolute relative error on the target's
/// last (1 − test_from_fraction) of training.
pub fn hitchhiker(law: Arc<dyn LawForm>, curves: &[Curve], opts: &HitchhikerOptions, fit_opts: &FitOptions) -> Result<HitchhikerResult> {
    let (train, test, target) = hitchhiker_split(curves, opts)?;
    Ok(HitchhikerResult { target, held_out: held_out_error(law, &train, &test, fit_opts)? })
}
