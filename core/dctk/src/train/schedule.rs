//! Learning-rate schedules, as functions of the optimizer step.
//!
//! - `wsd`: warmup–stable–decay (the trapezoid of dc_pretrain: Xu, Wu, Cho, Hu,
//!   Wang 2026, "MIR and SoftQ"; authors' release yixinw-lab/dc_pretrain, commit 8d7ceeb): linear
//!   warmup over the first 1% of steps, constant, then linear decay over the last 10%
//!   down to 0.01× the peak. Fractions are settable.
//! - `cosine`: linear warmup, then a half cosine from the peak down to `final_lr_frac`
//!   × peak (default 0.1×, as in Chinchilla).
//! - `constant`: linear warmup, then the peak.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Wsd,
    Cosine,
    Constant,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak_lr: f64,
    pub total_steps: u64,
    pub warmup_frac: f64,
    /// Fraction of the run spent in the final linear decay (`wsd` only).
    pub decay_frac: f64,
    /// The last step's learning rate as a fraction of the peak.
    pub final_lr_frac: f64,
}

impl Schedule {
    /// Default final fraction per kind: 0.01 for WSD (dc_pretrain), 0.1 for cosine.
    pub fn default_final_frac(kind: ScheduleKind) -> f64 {
        match kind {
            ScheduleKind::Wsd => 0.01,
            ScheduleKind::Cosine => 0.1,
            ScheduleKind::Constant => 1.0,
        }
    }

    fn warmup_steps(&self) -> u64 {
        ((self.warmup_frac * self.total_steps as f64).round() as u64).min(self.total_steps)
    }

    /// The learning rate for 0-based step `step` (the update that makes step+1).
    pub fn lr(&self, step: u64) -> f64 {
        let warmup = self.warmup_steps();
        if step < warmup {
            return self.peak_lr * (step + 1) as f64 / warmup as f64;
        }
        let last = self.total_steps.saturating_sub(1).max(1) as f64;
        let floor = self.final_lr_frac * self.peak_lr;
        match self.kind {
            ScheduleKind::Constant => self.peak_lr,
            ScheduleKind::Cosine => {
                let span = (last - warmup as f64).max(1.0);
                let progress = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
                floor + 0.5 * (self.peak_lr - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Wsd => {
                let decay_steps = (self.decay_frac * self.total_steps as f64).round() as u64;
                let decay_start = self.total_steps.saturating_sub(decay_steps).max(warmup);
                if step < decay_start || decay_steps == 0 {
                    return self.peak_lr;
                }
                let span = (last - decay_start as f64).max(1.0);
                let progress = ((step - decay_start) as f64 / span).clamp(0.0, 1.0);
                self.peak_lr + (floor - self.peak_lr) * progress
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            peak_lr: 1.0,
            total_steps: 1000,
            warmup_frac: 0.01,
            decay_frac: 0.1,
            final_lr_frac: Schedule::default_final_frac(kind),
        }
    }

    #[test]
    fn wsd_is_a_trapezoid() {
        let s = sched(ScheduleKind::Wsd);
        assert!((s.lr(0) - 0.1).abs() < 1e-12); // 10 warmup steps
        assert_eq!(s.lr(9), 1.0);
        assert_eq!(s.lr(500), 1.0);
        assert_eq!(s.lr(899), 1.0);
        assert!(s.lr(950) < 1.0 && s.lr(950) > 0.01);
        assert!((s.lr(999) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn cosine_ends_at_floor() {
        let s = sched(ScheduleKind::Cosine);
        assert_eq!(s.lr(9), 1.0);
        assert!((s.lr(999) - 0.1).abs() < 1e-12);
        let mid = s.lr(504);
        assert!((mid - 0.55).abs() < 0.01, "{mid}");
    }

    #[test]
    fn tiny_runs_do_not_divide_by_zero() {
        for kind in [ScheduleKind::Wsd, ScheduleKind::Cosine, ScheduleKind::Constant] {
            let mut s = sched(kind);
            s.total_steps = 1;
            assert!(s.lr(0).is_finite() && s.lr(0) > 0.0);
        }
    }
}
