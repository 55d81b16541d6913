//! Progress reports of a running fit: which phase (screening every start,
//! polishing the best, bootstrap refits) and how many of its starts are done.
//!
//! Why: a Muennighoff free fit from its 25,600-start grid takes seconds and a
//! bootstrap of it longer; a host (the `dctk fit` bar) needs to say it is
//! working. The fitter calls a [`ProgressHook`] from its worker threads as
//! each start finishes, so the hook must be cheap and thread-safe; it is
//! never serialised (a fit request read from JSON or Rhai has none).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The phase a [`FitProgress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FitPhase {
    /// Every grid start run to the screening tolerance.
    Screen,
    /// The best screened starts run to the full tolerance.
    Polish,
    /// Bootstrap refits (counted in resamples).
    Bootstrap,
}

impl FitPhase {
    /// Lower-case name for display: `screen`, `polish`, `bootstrap`.
    pub fn name(self) -> &'static str {
        match self {
            FitPhase::Screen => "screen",
            FitPhase::Polish => "polish",
            FitPhase::Bootstrap => "bootstrap",
        }
    }
}

/// `done` of `total` starts (or resamples) of `phase` have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitProgress {
    pub phase: FitPhase,
    pub done: usize,
    pub total: usize,
}

/// A progress callback for [`crate::FitOptions::progress`]. Called with
/// `done = 0` when a phase begins and again after every finished start, from
/// any of the fitter's threads.
#[derive(Clone)]
pub struct ProgressHook(Arc<dyn Fn(FitProgress) + Send + Sync>);

impl ProgressHook {
    pub fn new(f: impl Fn(FitProgress) + Send + Sync + 'static) -> ProgressHook {
        ProgressHook(Arc::new(f))
    }
    /// Report `p`.
    pub fn report(&self, p: FitProgress) {
        (self.0)(p)
    }
}

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook(..)")
    }
}

/// Counts finished starts of one phase and forwards them to the hook.
pub(crate) struct Tracker<'a> {
    hook: &'a ProgressHook,
    phase: FitPhase,
    total: usize,
    done: AtomicUsize,
}

impl<'a> Tracker<'a> {
    /// Begin a phase of `total` starts (reports done = 0).
    pub(crate) fn begin(hook: &'a ProgressHook, phase: FitPhase, total: usize) -> Tracker<'a> {
        hook.report(FitProgress { phase, done: 0, total });
        Tracker { hook, phase, total, done: AtomicUsize::new(0) }
    }
    /// One more start finished.
    pub(crate) fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.hook.report(FitProgress { phase: self.phase, done, total: self.total });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fit, laws::Chinchilla, BootstrapOptions, FitOptions, LawForm, Points};
    use std::sync::Mutex;

    #[test]
    fn every_phase_is_reported_from_zero_to_its_total() {
        let (n, d): (Vec<f64>, Vec<f64>) = (0..24).map(|i| (1e7 * 1.4f64.powi(i % 8), 2e9 * 1.6f64.powi(i / 3))).unzip();
        let law = Chinchilla;
        let inputs = crate::Inputs::new(law.inputs(), vec![n.clone(), d.clone()]);
        let loss = law.predict(&[6.0, 7.0, 0.5, 0.34, 0.28], &inputs);
        let points = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], loss).unwrap();
        let seen: Arc<Mutex<Vec<FitProgress>>> = Arc::default();
        let sink = seen.clone();
        let grid = crate::law::cartesian_grid(&[vec![5.0, 7.0], vec![6.0, 8.0], vec![0.0, 1.0], vec![0.3], vec![0.3]]);
        let opts = FitOptions {
            grid: Some(grid),
            polish_top: 3,
            bootstrap: Some(BootstrapOptions { resamples: 10, seed: 1, level: 0.9 }),
            progress: Some(ProgressHook::new(move |p| sink.lock().unwrap().push(p))),
            ..FitOptions::default()
        };
        fit(Arc::new(law), &points, &opts).unwrap();
        let seen = seen.lock().unwrap();
        for (phase, total) in [(FitPhase::Screen, 8), (FitPhase::Polish, 3), (FitPhase::Bootstrap, 10)] {
            let of: Vec<&FitProgress> = seen.iter().filter(|p| p.phase == phase).collect();
            assert_eq!(of.first().map(|p| p.done), Some(0), "{phase:?} begins at 0: {of:?}");
            assert!(of.iter().all(|p| p.total == total), "{phase:?} totals: {of:?}");
            assert_eq!(of.iter().map(|p| p.done).max(), Some(total), "{phase:?} reaches its total");
            assert_eq!(of.len(), total + 1, "{phase:?}: one report per start plus the start of the phase");
        }
    }
}
