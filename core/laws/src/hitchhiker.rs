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
//!
//! The result carries the fitted parameters (with bootstrap percentile intervals when the
//! fit options ask for a bootstrap), each held-out prediction, the fit's warnings
//! ([`crate::diagnose`]) and, with `compare_final_only`, the same protocol fitted on the
//! smaller models' *final* checkpoints only (one point per model, as a final-loss scaling
//! study would), side by side with the intermediate-checkpoint fit (Choshen et al. 2024,
//! §5, compare the two).

use crate::data::Points;
use crate::decide::{held_out_fit, HeldOut};
use crate::error::{LawError, Result};
use crate::fit::FitOptions;
use crate::law::LawForm;
use crate::report::{BootstrapSummary, Estimate, FitWarning, Interval};
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
    /// Also fit on each smaller model's final (last kept) checkpoint only and score the
    /// same held-out points ([`HitchhikerResult::final_only`]).
    #[serde(default)]
    pub compare_final_only: bool,
}

impl Default for HitchhikerOptions {
    fn default() -> Self {
        HitchhikerOptions { cut_beginning_tokens: 1e10, train_fraction: 1.0, test_from_fraction: 0.7, compare_final_only: false }
    }
}

/// One held-out checkpoint of the target: its inputs, the observed and predicted loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeldOutPoint {
    /// Model size N.
    pub n: f64,
    /// Tokens seen D.
    pub d: f64,
    pub observed: f64,
    pub predicted: f64,
    /// (predicted − observed) / observed.
    pub rel_error: f64,
    /// Bootstrap percentile interval of the prediction (with a bootstrap).
    pub interval: Option<Interval>,
}

/// The protocol fitted on the smaller models' final checkpoints only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalOnly {
    /// Training points (one per smaller model).
    pub n_train: usize,
    /// Held-out score of the final-only fit; `None` when it could not be fitted (`error`).
    pub held_out: Option<HeldOut>,
    /// The intermediate-checkpoint fit's ARE, repeated for the side-by-side reading.
    pub are_intermediate: f64,
    /// The final-only fit's ARE (`None` with `error`).
    pub are_final_only: Option<f64>,
    pub warnings: Vec<FitWarning>,
    /// Why the final-only fit failed (e.g. fewer models than free parameters).
    pub error: Option<String>,
}

/// Protocol outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitchhikerResult {
    pub target: String,
    pub held_out: HeldOut,
    /// Fitted parameters (intervals when bootstrapped) and derived quantities.
    pub params: Vec<Estimate>,
    pub derived: Vec<Estimate>,
    pub bootstrap: Option<BootstrapSummary>,
    /// Each held-out checkpoint of the target with its prediction.
    pub predictions: Vec<HeldOutPoint>,
    /// The fit's warnings (bounds, identifiability, design, competing optima).
    pub warnings: Vec<FitWarning>,
    /// With `compare_final_only`: the final-checkpoints-only fit on the same held-out points.
    pub final_only: Option<FinalOnly>,
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
    let (fit, held_out) = held_out_fit(law.clone(), &train, &test, fit_opts)?;
    let predicted = fit.predict(&test)?;
    let (n, d) = (test.column("N")?, test.column("D")?);
    let predictions = predicted
        .iter()
        .enumerate()
        .map(|(i, p)| HeldOutPoint { n: n[i], d: d[i], observed: test.loss[i], predicted: p.value, rel_error: (p.value - test.loss[i]) / test.loss[i], interval: p.interval })
        .collect();
    let final_only = if opts.compare_final_only {
        let last = final_checkpoints(&train)?;
        let n_train = last.len();
        // A final-only fit often has too few points for the law; that is the comparison's
        // finding, reported as its error rather than failing the whole protocol.
        Some(match held_out_fit(law, &last, &test, fit_opts) {
            Ok((f, h)) => FinalOnly { n_train, are_intermediate: held_out.are, are_final_only: Some(h.are), held_out: Some(h), warnings: f.report.warnings, error: None },
            Err(e) => FinalOnly { n_train, are_intermediate: held_out.are, are_final_only: None, held_out: None, warnings: Vec::new(), error: Some(e.to_string()) },
        })
    } else {
        None
    };
    let r = fit.report;
    Ok(HitchhikerResult { target, held_out, params: r.params, derived: r.derived, bootstrap: r.bootstrap, predictions, warnings: r.warnings, final_only })
}

/// The last checkpoint (largest D) of each model size among the training points.
pub fn final_checkpoints(train: &Points) -> Result<Points> {
    let (n, d) = (train.column("N")?, train.column("D")?);
    let mut last: Vec<usize> = Vec::new();
    for i in 0..n.len() {
        match last.iter_mut().find(|j| n[**j] == n[i]) {
            Some(j) if d[i] > d[*j] => *j = i,
            Some(_) => {}
            None => last.push(i),
        }
    }
    train.select(&last)
}
