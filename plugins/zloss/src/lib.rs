//! z-loss as a dctk regularizer plugin: a second regularizer, different in kind
//! from MIR (no extra vocabulary, no second forward), showing the interface is
//! general. From PaLM (Chowdhery et al. 2022, §5): add `w · mean(log Z)²`, where
//! log Z = logsumexp of each position's logits, to keep the softmax normaliser
//! near 1 (w = 1e-4 in the paper). It asks the host for the main pass's logits
//! (`Model::main_logits`), so it costs one head GEMM, not a second forward.
//!
//! Metrics (logged as `zloss/<name>`): `z2` (mean (log Z)², unweighted).
use dctk_plugin_sdk::tch::{Kind, Tensor};
use dctk_plugin_sdk::{export_plugin, Batch, Metrics, Model, Regularizer, Result, Setting, SettingValues, StepInfo};

/// z-loss with weight `weight`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZLoss {
    pub weight: f64,
}

impl ZLoss {
    /// Unweighted mean (logsumexp over the vocabulary)² of logits `[.., V]`, in fp32.
    pub fn z2(logits: &Tensor) -> Result<Tensor> {
        Ok(logits.to_kind(Kind::Float).f_logsumexp([-1], false)?.square().mean(Kind::Float))
    }
}

impl Regularizer for ZLoss {
    fn settings() -> Vec<Setting> {
        vec![Setting::float("weight", 1e-4, "weight w of mean(log Z)² (PaLM: 1e-4)").range(0.0, 1.0e3)]
    }

    fn new(s: &SettingValues) -> Result<Self> {
        Ok(ZLoss { weight: s.f64("weight")? })
    }

    fn aux_loss(&mut self, _info: &StepInfo, model: &mut Model, _batch: &Batch, metrics: &mut Metrics) -> Result<Option<Tensor>> {
        // The main pass's logits, made on request by the host (its loss never needs them).
        let z2 = Self::z2(&model.main_logits()?)?;
        metrics.log("z2", z2.f_double_value(&[])?);
        Ok(Some(z2 * self.weight))
    }
}

export_plugin! {
    name: "zloss",
    version: env!("CARGO_PKG_VERSION"),
    description: "z-loss on the softmax normaliser (PaLM, Chowdhery et al. 2022)",
    regularizer: ZLoss,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z2_matches_hand_computation() {
        // Two positions, V = 2: log Z = ln(e^0 + e^0) = ln 2 and ln(e^1 + e^1) = 1 + ln 2.
        let logits = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 1.0]).view([1, 2, 2]);
        let got = ZLoss::z2(&logits).unwrap().double_value(&[]);
        let l2 = std::f64::consts::LN_2;
        let want = (l2 * l2 + (1.0 + l2) * (1.0 + l2)) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
