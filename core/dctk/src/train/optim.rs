//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), written in dctk.
//!
//! Why not `tch::nn::Optimizer`: tch cannot save or restore optimizer state (tch-rs
//! PR #388 is still open), and exact resume needs the moments. Here every piece of
//! state is a named tensor, so a checkpoint is a safetensors file and a step counter.
//!
//! The update is PyTorch's `AdamW` (and the recipe of dc_pretrain: Xu, Wu, Cho, Hu, Wang 2026, "MIR and SoftQ";
//! authors' release yixinw-lab/dc_pretrain, commit 8d7ceeb):
//!
//! ```text
//! p ← p · (1 − lr·wd)                 (decoupled decay; skipped for the no-decay group)
//! m ← β₁·m + (1 − β₁)·g
//! v ← β₂·v + (1 − β₂)·g²
//! p ← p − lr · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! Mixed precision: when the model's parameters are bf16, the optimizer keeps fp32
//! master weights and fp32 moments, updates the masters and copies them back into the
//! bf16 parameters (tch's autocast is fp16-only, so this is how dctk trains in bf16).
use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use super::model::is_no_decay;

/// The settings of the update rule (a plain serde-free struct: the run spec owns them).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

struct ParamState {
    name: String,
    /// The model's variable (fp32 or bf16).
    param: Tensor,
    /// fp32 master copy when `param` is of lower precision.
    master: Option<Tensor>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of updates taken so far (the t of the bias corrections).
    pub step: i64,
    params: Vec<ParamState>,
}

impl AdamW {
    /// One state entry per named variable, in name order (deterministic).
    pub fn new(variables: BTreeMap<String, Tensor>, config: AdamWConfig) -> Self {
        let params = variables
            .into_iter()
            .map(|(name, param)| {
                let master = (param.kind() != Kind::Float)
                    .then(|| tch::no_grad(|| param.detach().to_kind(Kind::Float)));
                let zeros = || tch::no_grad(|| param.zeros_like().to_kind(Kind::Float));
                ParamState {
                    decay: !is_no_decay(&name),
                    exp_avg: zeros(),
                    exp_avg_sq: zeros(),
                    master,
                    param,
                    name,
                }
            })
            .collect();
        AdamW { config, step: 0, params }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// Global-norm clipping (threshold `max_norm`, 0 = off): returns the norm before
    /// clipping. Reads it back to the host; the step uses [`AdamW::clip_grad_norm_on_device`].
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        self.clip_grad_norm_on_device(max_norm).double_value(&[])
    }

    /// Global-norm clipping without a host round trip: the coefficient
    /// min(1, max_norm / (‖g‖ + 1e-6)) is a device scalar every gradient is multiplied by
    /// (1 when the norm is below the threshold), so nothing waits on the device. Returns
    /// ‖g‖ before clipping, as a device scalar (fp32).
    pub fn clip_grad_norm_on_device(&mut self, max_norm: f64) -> Tensor {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .filter_map(|p| p.param.grad().defined().then(|| p.param.grad()))
                .collect();
            let device = self.params.first().map_or(tch::Device::Cpu, |p| p.param.device());
            if grads.is_empty() {
                return Tensor::zeros([], (Kind::Float, device));
            }
            let sq: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
            let total = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt();
            if max_norm > 0.0 {
                let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
                for g in &grads {
                    let mut g = g.shallow_clone();
                    let _ = g.g_mul_(&coef.to_kind(g.kind()));
                }
            }
            total
        })
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = grad.to_kind(Kind::Float);
                let mut w = p.master.as_ref().unwrap_or(&p.param).shallow_clone();
                if p.decay && c.weight_decay != 0.0 {
                    let _ = w.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = p.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = p.exp_avg_sq.g_add_(&(grad.square() * (1.0 - c.beta2)));
                let denom = p.exp_avg_sq.sqrt() / bias2_sqrt + c.eps;
                let _ = w.g_sub_(&(&p.exp_avg / denom * (lr / bias1)));
                if p.master.is_some() {
                    let _ = p.param.copy_(&w);
                }
            }
        });
    }

    /// The state as named tensors for a checkpoint: `exp_avg.<name>`, `exp_avg_sq.<name>`
    /// and, in mixed precision, `master.<name>`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", p.name), p.exp_avg_sq.shallow_clone()));
            if let Some(m) = &p.master {
                out.push((format!("master.{}", p.name), m.shallow_clone()));
            }
        }
        out
    }

    /// Restores the state written by [`AdamW::state_tensors`]; every tensor must be
    /// present with the right shape, or the error names the first one that is not.
    pub fn load_state_tensors(&mut self, step: i64, tensors: &BTreeMap<String, Tensor>) -> Result<(), String> {
        tch::no_grad(|| {
            for p in &mut self.params {
                let mut targets = vec![("exp_avg", &mut p.exp_avg), ("exp_avg_sq", &mut p.exp_avg_sq)];
                if let Some(m) = p.master.as_mut() {
                    targets.push(("master", m));
                }
                for (prefix, dst) in targets {
                    let key = format!("{prefix}.{}", p.name);
                    let src = tensors.get(&key).ok_or_else(|| format!("optimizer state is missing `{key}`"))?;
                    if src.size() != dst.size() {
                        return Err(format!("optimizer state `{key}` has shape {:?}, expected {:?}", src.size(), dst.size()));
                    }
                    let _ = dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Compares one parameter's trajectory against a hand-computed AdamW update.
    #[test]
    fn matches_reference_update() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut vars = BTreeMap::new();
        vars.insert("h.0.mlp.down".to_string(), p.shallow_clone());
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.5 };
        let mut opt = AdamW::new(vars, cfg);
        let (lr, mut w, mut m, mut v) = (0.1f64, [1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            opt.zero_grad();
            let loss = (&p * &p).sum(Kind::Float); // grad = 2p
            loss.backward();
            opt.step(lr);
            for i in 0..2 {
                let g = 2.0 * w[i];
                w[i] *= 1.0 - lr * cfg.weight_decay;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.95 * v[i] + 0.05 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.95f64.powi(t));
                w[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got: Vec<f32> = Vec::try_from(p.detach().to_device(Device::Cpu)).unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - w[i]).abs() < 1e-5, "param {i}: {} vs {}", got[i], w[i]);
        }
    }

    #[test]
    fn no_decay_params_are_not_decayed() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut vars = BTreeMap::new();
        vars.insert("wte".to_string(), p.shallow_clone());
        let mut opt = AdamW::new(vars, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 10.0 });
        opt.zero_grad();
        (&p * 0.0).sum(Kind::Float).backward(); // zero gradient: only decay could move p
        opt.step(0.1);
        assert_eq!(p.double_value(&[0]), 1.0);
    }

    #[test]
    fn clip_scales_to_max_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut vars = BTreeMap::new();
        vars.insert("lm_head".to_string(), p.shallow_clone());
        let mut opt = AdamW::new(vars, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 });
        (&p * &p).sum(Kind::Float).g_mul_scalar(0.5).backward(); // grad = p, norm 5
        let norm = opt.clip_grad_norm(1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        let g = p.grad();
        let clipped = (g.square().sum(Kind::Float)).sqrt().double_value(&[]);
        assert!((clipped - 1.0).abs() < 1e-4, "{clipped}");
    }
}
