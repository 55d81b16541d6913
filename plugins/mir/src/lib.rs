//! MIR, masked-input regularization, as a dctk regularizer plugin.
//!
//! Paper: Xu, Wu, Cho, Hu, Wang (2026), "MIR and SoftQ" (data-constrained pretraining);
//! the loss is the authors' release's (yixinw-lab/dc_pretrain, commit 8d7ceeb,
//! `dcp/train4_diffusionauxiliary_impl.py`). Exactly as implemented there, per micro-batch:
//!
//! ```text
//! L_total = CE_mean(f(x), y) + λ · CE_mean(f(M(x)), y)
//! ```
//!
//! with the *same* clean next-token targets y. The mask operator M, per sequence b:
//! draw r_b ~ U[r_min, r_max] = U[0, 0.5]; replace each position t ≥ ltr_length (= 8)
//! independently with probability r_b by MASK; the first 8 tokens are never masked.
//! MASK is one token added to the vocabulary: the host gives it the first id after the
//! tokenizer's (`StepInfo::first_extra_id`; GPT-2: 50,257) and pads the embedding past it. The masked pass's
//! CE covers all positions under causal attention (`--stage1-full-seq`, set by every
//! paper script); λ = 0.4 (`--adaptive-loss-downscale` in all paper scripts).
//!
//! The authors draw masks with a CPU `torch.Generator`; here they come from a ChaCha8
//! stream keyed by (run seed, step, micro-batch), so a run reproduces and resumes
//! exactly, and the host's libtorch RNG (dropout) is left untouched.
//!
//! Metrics (logged as `mir/<name>`): `aux_loss` (the unweighted masked-pass CE),
//! `mask_rate` (fraction of maskable positions masked in this micro-batch).
use dctk_plugin_sdk::tch::{Kind, Tensor};
use dctk_plugin_sdk::{export_plugin, Batch, Metrics, Model, PluginError, Regularizer, Result, Setting, SettingValues, StepInfo};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// MIR's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Mir {
    /// λ, the weight of the masked-pass loss.
    pub lambda: f64,
    pub r_min: f64,
    pub r_max: f64,
    /// Positions `0..ltr_length` are never masked.
    pub ltr_length: i64,
    /// Explicit MASK id; -1 = the first extra vocabulary id the host assigns.
    pub mask_id: i64,
}

/// A sampled mask for a `[b, t]` batch: row-major booleans and each row's rate r.
#[derive(Debug, Clone)]
pub struct MaskSample {
    pub mask: Vec<bool>,
    pub rates: Vec<f64>,
}

/// splitmix64 finaliser: spreads (seed, step, micro) into an RNG seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Mir {
    /// The MASK id for a step: the explicit setting, or the host-assigned extra id.
    pub fn mask_token(&self, info: &StepInfo) -> i64 {
        if self.mask_id >= 0 {
            self.mask_id
        } else {
            info.first_extra_id
        }
    }

    /// M's random choices for a `[b, t]` micro-batch, a pure function of
    /// (seed, step, micro): per row r ~ U[r_min, r_max], then each position
    /// ≥ ltr_length masked independently with probability r.
    pub fn sample_mask(&self, seed: u64, step: u64, micro: u64, b: usize, t: usize) -> MaskSample {
        let key = mix(mix(mix(seed ^ 0x004D_4952_u64) ^ step) ^ micro);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let mut mask = vec![false; b * t];
        let mut rates = Vec::with_capacity(b);
        let start = (self.ltr_length.max(0) as usize).min(t);
        for row in 0..b {
            let r = self.r_min + (self.r_max - self.r_min) * rng.random::<f64>();
            rates.push(r);
            for m in &mut mask[row * t + start..(row + 1) * t] {
                *m = rng.random::<f64>() < r;
            }
        }
        MaskSample { mask, rates }
    }

    /// `inputs` with M applied (same device and dtype), and the fraction of
    /// maskable positions that were masked.
    pub fn mask_inputs(&self, info: &StepInfo, inputs: &Tensor) -> Result<(Tensor, f64)> {
        let size = inputs.size();
        if size.len() != 2 {
            return Err(PluginError::msg(format!("mir: inputs must be [batch, time], got {size:?}")));
        }
        let (b, t) = (size[0] as usize, size[1] as usize);
        let sample = self.sample_mask(info.seed, info.step, info.micro, b, t);
        let n_masked = sample.mask.iter().filter(|&&m| m).count();
        let maskable = b * t.saturating_sub(self.ltr_length.max(0) as usize);
        let bytes: Vec<u8> = sample.mask.iter().map(|&m| m as u8).collect();
        let mask = Tensor::from_slice(&bytes).view([b as i64, t as i64]).to_kind(Kind::Bool).to_device(inputs.device());
        let masked = inputs.masked_fill(&mask, self.mask_token(info));
        Ok((masked, if maskable == 0 { 0.0 } else { n_masked as f64 / maskable as f64 }))
    }
}

impl Regularizer for Mir {
    fn settings() -> Vec<Setting> {
        vec![
            Setting::float("lambda", 0.4, "weight λ of the masked-input loss (paper: 0.4)").range(0.0, 1.0e6),
            Setting::float("r_min", 0.0, "lower end of the per-sequence mask rate r ~ U[r_min, r_max]").range(0.0, 1.0),
            Setting::float("r_max", 0.5, "upper end of the per-sequence mask rate (paper: 0.5)").range(0.0, 1.0),
            Setting::int("ltr_length", 8, "the first ltr_length positions are never masked (paper: 8)").range(0.0, 1.0e9),
            Setting::int("mask_id", -1, "MASK token id; -1 = first id past the tokenizer's vocabulary (GPT-2: 50257)").range(-1.0, 1.0e9),
        ]
    }

    fn new(s: &SettingValues) -> Result<Self> {
        let mir = Mir {
            lambda: s.f64("lambda")?,
            r_min: s.f64("r_min")?,
            r_max: s.f64("r_max")?,
            ltr_length: s.i64("ltr_length")?,
            mask_id: s.i64("mask_id")?,
        };
        if mir.r_min > mir.r_max {
            return Err(PluginError::msg(format!("mir: r_min = {} is above r_max = {}", mir.r_min, mir.r_max)));
        }
        Ok(mir)
    }

    fn extra_vocab_tokens(&self) -> i64 {
        if self.mask_id >= 0 {
            0
        } else {
            1
        }
    }

    fn aux_loss(&mut self, info: &StepInfo, model: &mut Model, batch: &Batch, metrics: &mut Metrics) -> Result<Option<Tensor>> {
        let (masked, rate) = self.mask_inputs(info, &batch.inputs)?;
        // The masked pass's cross-entropy through the host's fused head (no logits held).
        let ce = model.loss(&masked, &batch.targets)?;
        metrics.log("aux_loss", ce.f_double_value(&[])?);
        metrics.log("mask_rate", rate);
        Ok(Some(ce * self.lambda))
    }
}

export_plugin! {
    name: "mir",
    version: env!("CARGO_PKG_VERSION"),
    description: "masked-input regularization (Xu, Wu, Cho, Hu, Wang 2026; dc_pretrain)",
    regularizer: Mir,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dctk_plugin_sdk::serde_json::Value;
    use dctk_plugin_sdk::settings::validate;

    fn paper() -> Mir {
        let m = validate("mir", &Mir::settings(), &Value::Null).unwrap();
        Mir::new(&SettingValues(m)).unwrap()
    }

    fn info(step: u64, micro: u64) -> StepInfo {
        StepInfo { seed: 7, step, micro, base_vocab: 50257, first_extra_id: 50257 }
    }

    #[test]
    fn defaults_are_the_papers() {
        let m = paper();
        assert_eq!(m, Mir { lambda: 0.4, r_min: 0.0, r_max: 0.5, ltr_length: 8, mask_id: -1 });
        assert_eq!(m.extra_vocab_tokens(), 1);
        assert_eq!(m.mask_token(&info(0, 0)), 50257);
    }

    #[test]
    fn first_eight_positions_never_masked_and_rates_in_range() {
        let m = paper();
        let (b, t) = (512, 256);
        let s = m.sample_mask(1, 2, 0, b, t);
        for row in 0..b {
            assert!(s.mask[row * t..row * t + 8].iter().all(|&x| !x), "row {row} masked a position < 8");
            assert!((0.0..=0.5).contains(&s.rates[row]));
        }
        // Realised per-row rate tracks r: |rate - r| is within 4 binomial SDs.
        for row in 0..b {
            let n = (t - 8) as f64;
            let k = s.mask[row * t + 8..(row + 1) * t].iter().filter(|&&x| x).count() as f64;
            let r = s.rates[row];
            let sd = (r * (1.0 - r) / n).sqrt().max(1e-3);
            assert!((k / n - r).abs() < 4.5 * sd + 1e-9, "row {row}: rate {} vs r {r}", k / n);
        }
    }

    #[test]
    fn rate_distribution_is_uniform_0_to_half() {
        let m = paper();
        let mut rates = Vec::new();
        for step in 0..50 {
            rates.extend(m.sample_mask(3, step, 0, 200, 16).rates);
        }
        let n = rates.len() as f64; // 10,000 draws
        let mean = rates.iter().sum::<f64>() / n;
        let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 0.25).abs() < 0.005, "mean {mean}");
        assert!((var - 0.25f64.powi(2) / 3.0).abs() < 0.001, "var {var}"); // (0.5)^2/12
                                                                           // Kolmogorov–Smirnov against U[0, 0.5]: D < 1.63/sqrt(n) (α = 0.01).
        rates.sort_by(f64::total_cmp);
        let d = rates
            .iter()
            .enumerate()
            .map(|(i, &r)| ((i + 1) as f64 / n - 2.0 * r).abs().max((2.0 * r - i as f64 / n).abs()))
            .fold(0.0, f64::max);
        assert!(d < 1.63 / n.sqrt(), "KS D = {d}");
        // Overall masked fraction of maskable positions ≈ E[r] = 0.25.
        let s = m.sample_mask(9, 0, 0, 1000, 72);
        let frac = s.mask.iter().filter(|&&x| x).count() as f64 / (1000.0 * 64.0);
        assert!((frac - 0.25).abs() < 0.01, "masked fraction {frac}");
    }

    #[test]
    fn masks_are_a_function_of_seed_step_micro() {
        let m = paper();
        let a = m.sample_mask(5, 10, 1, 4, 64);
        assert_eq!(a.mask, m.sample_mask(5, 10, 1, 4, 64).mask);
        assert_ne!(a.mask, m.sample_mask(5, 10, 0, 4, 64).mask);
        assert_ne!(a.mask, m.sample_mask(5, 11, 1, 4, 64).mask);
        assert_ne!(a.mask, m.sample_mask(6, 10, 1, 4, 64).mask);
    }

    #[test]
    fn masked_tensor_uses_mask_id_only_where_sampled() {
        let m = paper();
        let inputs = Tensor::arange(4 * 64, (Kind::Int64, dctk_plugin_sdk::tch::Device::Cpu)).view([4, 64]);
        let (masked, rate) = m.mask_inputs(&info(3, 0), &inputs).unwrap();
        let s = m.sample_mask(7, 3, 0, 4, 64);
        let got: Vec<i64> = Vec::try_from(masked.view([-1])).unwrap();
        for (i, (&g, &mk)) in got.iter().zip(&s.mask).enumerate() {
            assert_eq!(g, if mk { 50257 } else { i as i64 });
        }
        assert!(rate > 0.0 && rate < 0.5, "{rate}");
        // An explicit mask_id wins and asks for no extra token.
        let explicit = Mir { mask_id: 50300, ..paper() };
        assert_eq!(explicit.extra_vocab_tokens(), 0);
        let (masked, _) = explicit.mask_inputs(&info(3, 0), &inputs).unwrap();
        assert!(Vec::<i64>::try_from(masked.view([-1])).unwrap().contains(&50300));
    }

    #[test]
    fn r_min_above_r_max_is_an_error() {
        let mut v = validate("mir", &Mir::settings(), &Value::Null).unwrap();
        v.insert("r_min".into(), 0.6.into());
        assert!(Mir::new(&SettingValues(v)).unwrap_err().0.contains("r_min"));
    }
}
