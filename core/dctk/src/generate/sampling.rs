//! What a generation request asks for ([`SamplingParams`]) and how one next token is
//! chosen from a row of logits: greedy at temperature 0, else softmax(logits / T) cut to
//! the top-k tokens and to the smallest set whose probability reaches top-p (Holtzman et al.
//! 2020, "The Curious Case of Neural Text Degeneration", nucleus sampling), drawn with the
//! request's own seeded generator, so a request's tokens do not depend on what else is in
//! its batch.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sampling settings of one request. The defaults are OpenAI's (temperature 1, top-p 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 = greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p; 1 = off.
    pub top_p: f64,
    /// Stop before the first occurrence of any of these strings in the generated text.
    pub stop: Vec<String>,
    /// Seeds the request's own generator.
    pub seed: u64,
    /// Go on past the end-of-text token (default: stop there).
    pub ignore_eot: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { max_tokens: 16, temperature: 1.0, top_k: 0, top_p: 1.0, stop: Vec::new(), seed: 0, ignore_eot: false }
    }
}

impl SamplingParams {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!("temperature must be a number ≥ 0, got {}", self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err("stop: a stop sequence must not be empty".into());
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Chooses next tokens for one request: its own generator, seeded from the request's seed,
/// so the same request gives the same tokens whatever else is decoded beside it.
pub struct TokenSampler {
    rng: ChaCha8Rng,
    /// Scratch: candidate (id, weight) pairs, reused across steps.
    scratch: Vec<(u32, f64)>,
}

impl TokenSampler {
    pub fn new(seed: u64) -> TokenSampler {
        TokenSampler { rng: ChaCha8Rng::seed_from_u64(seed), scratch: Vec::new() }
    }

    /// The next token from `logprobs` (natural log-probabilities over the ids that may be
    /// generated) under `params`: argmax at temperature 0 (the lowest id among ties), else a
    /// draw from softmax(logprobs / T) restricted to the top-k ids and then to the smallest
    /// prefix of them whose probability reaches top-p.
    pub fn choose(&mut self, logprobs: &[f32], params: &SamplingParams) -> u32 {
        if params.is_greedy() {
            return argmax(logprobs);
        }
        let inv_t = 1.0 / params.temperature;
        let c = &mut self.scratch;
        c.clear();
        let max = logprobs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        c.extend(logprobs.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, ((l as f64 - max) * inv_t).exp())));
        if c.is_empty() {
            return argmax(logprobs);
        }
        let truncate = params.top_k > 0 && params.top_k < c.len() || params.top_p < 1.0;
        if truncate {
            // Most likely first; ties by id, so the order (and the draw) is deterministic.
            c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if params.top_k > 0 && params.top_k < c.len() {
                c.truncate(params.top_k);
            }
            if params.top_p < 1.0 {
                let total: f64 = c.iter().map(|x| x.1).sum();
                let mut acc = 0.0;
                let mut keep = c.len();
                for (i, x) in c.iter().enumerate() {
                    acc += x.1 / total;
                    if acc >= params.top_p {
                        keep = i + 1;
                        break;
                    }
                }
                c.truncate(keep);
            }
        }
        let total: f64 = c.iter().map(|x| x.1).sum();
        let mut u = self.rng.random::<f64>() * total;
        for &(id, w) in c.iter() {
            u -= w;
            if u < 0.0 {
                return id;
            }
        }
        c.last().unwrap().0
    }
}

/// The index of the largest value (the first among ties).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(ps: &[f64]) -> Vec<f32> {
        ps.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn greedy_is_argmax() {
        let p = SamplingParams { temperature: 0.0, ..Default::default() };
        assert_eq!(TokenSampler::new(1).choose(&lp(&[0.1, 0.6, 0.3]), &p), 1);
    }

    #[test]
    fn same_seed_same_draws_and_seeds_differ() {
        let p = SamplingParams::default();
        let l = lp(&[0.25; 4]);
        let draw = |seed| (0..32).map(|_| 0).scan(TokenSampler::new(seed), |s, _: i32| Some(s.choose(&l, &p))).collect::<Vec<_>>();
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let l = lp(&[0.5, 0.3, 0.15, 0.05]);
        let mut s = TokenSampler::new(3);
        let k1 = SamplingParams { top_k: 1, ..Default::default() };
        assert!((0..50).all(|_| s.choose(&l, &k1) == 0));
        // top_p 0.8 keeps {0, 1} (0.5 + 0.3 reaches 0.8).
        let p8 = SamplingParams { top_p: 0.8, ..Default::default() };
        let seen: std::collections::BTreeSet<u32> = (0..400).map(|_| s.choose(&l, &p8)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1]);
        // Without a cut every token appears.
        let all: std::collections::BTreeSet<u32> = (0..2000).map(|_| s.choose(&l, &SamplingParams::default())).collect();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn low_temperature_sharpens() {
        let l = lp(&[0.6, 0.4]);
        let mut s = TokenSampler::new(5);
        let cold = SamplingParams { temperature: 0.05, ..Default::default() };
        let zeros = (0..500).filter(|_| s.choose(&l, &cold) == 0).count();
        assert!(zeros > 490, "{zeros}");
    }

    #[test]
    fn validation_names_the_field() {
        assert!(SamplingParams { temperature: -1.0, ..Default::default() }.validate().unwrap_err().contains("temperature"));
        assert!(SamplingParams { top_p: 0.0, ..Default::default() }.validate().unwrap_err().contains("top_p"));
        assert!(SamplingParams { stop: vec![String::new()], ..Default::default() }.validate().unwrap_err().contains("stop"));
    }
}
