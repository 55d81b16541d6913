//! BoLT latent thoughts (Ruan, Band, Maddison, Hashimoto 2025, "Reasoning to Learn from Latent
//! Thoughts", arXiv 2503.18866; authors' release ryoungj/BoLT @024315f): the `latent_thoughts`
//! augmenter and what it is made of — the four special tokens (this module owns their
//! strings), [`chunk`] (sentence units and random-length chunks), [`format`] (the training
//! formats) and [`resample`] (the E-step's importance resampling).
//!
//! With `samples: 1` (the warm start) it asks any generator for one thought per chunk with the
//! BoLT prompt (previous chunks as prefix, the chunk as suffix). With `samples: K ≥ 2` (the
//! E-step) it samples K thoughts per chunk from the current model in the posterior format,
//! scores each with the model ([`Scorer`]), keeps one by importance resampling and records
//! the ELBO. Either way the document comes out in the chosen training format, with the special
//! tokens as literal strings that the output corpus maps to single ids.
pub mod chunk;
pub mod format;
pub mod resample;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::augment::{AugAnswer, AugDoc, AugRequest, Augmenter, Scorer, SourceText};
use chunk::Chunking;
use format::{format_document, LatentFormat};
use resample::importance_resample;

/// Opens a latent thought (SoL).
pub const SOL: &str = "<|START_OF_LATENT|>";
/// Closes a latent thought (EoL).
pub const EOL: &str = "<|END_OF_LATENT|>";
/// Marks a thought written before its chunk (the prior form).
pub const PRIOR: &str = "<|PRIOR_PREFIX|>";
/// Marks a thought written after its chunk (the posterior form).
pub const POSTERIOR: &str = "<|POSTERIOR_PREFIX|>";
/// The special tokens, in the id order the output corpus gives them (base vocabulary + i).
pub const SPECIAL_TOKENS: [&str; 4] = [SOL, EOL, PRIOR, POSTERIOR];

/// The augmenter's name in scripts.
pub const NAME: &str = "latent_thoughts";

/// The release's system prompt (`configs/gen/gpt_latent_thoughts.yaml`), verbatim.
pub const DEFAULT_SYSTEM: &str = "You are an advanced AI system, highly knowledgeable and capable of deeply understanding and reasoning through any web document.";

/// The release's latent-thought prompt (`configs/gen/gpt_latent_thoughts.yaml`), verbatim,
/// with its `{prefix}` and `{suffix}` slots.
pub const DEFAULT_TEMPLATE: &str = "You are provided with a pair of web document prefix and suffix. Your task is to insert latent thoughts between them underlying the creation of the suffix conditioned on the prefix. The latent thoughts should include: the missing background knowledge and the reasoning traces underlying each claim (especially, step-by-step derivations or logical reasoning).\n\n### Prefix:\n{prefix}\n\n### Suffix:\n{suffix}\n\n### Your turn:\nNow provide the latent thoughts. Use concise, simple, and declarative language. Do not give any supporting remarks or references to the terms 'prefix' and 'suffix', as this output will go directly into a computer program. Do not apply any markdown formatting or text embellishments. Optimize the content to ensure every word is informative, avoid vague language like 'xxx is essential'. Emphasize on the suffix without repeating the content in the prefix. Focus on implicit reasoning and background knowledge that is not explicitly stated in the suffix, and use concrete logical reasoning or mathematical derivations when applicable.";

/// The settings keys a script may give (besides `name`).
pub const KEYS: [&str; 9] = ["name", "format", "mix_in_raw_ratio", "prefix_chunks", "template", "system", "samples", "max_tokens", "seed"];

/// The augmenter's settings (`augmenter: #{ name: "latent_thoughts", ... }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatentSettings {
    /// `random`, `prior_only`, `posterior_only` or `pure`.
    pub format: String,
    /// Per-document probability of emitting the raw text instead.
    pub mix_in_raw_ratio: f64,
    /// Previous chunks shown as the prefix (`num_prefix_context_units`; 3 as in the
    /// release's bootstrap config).
    pub prefix_chunks: usize,
    /// The warm-start prompt, with `{prefix}` and `{suffix}`.
    pub template: String,
    /// Text put before the template (plain text: dctk's generators are base models).
    pub system: String,
    /// K: thoughts sampled per chunk. 1 = warm start; K ≥ 2 = the E-step (needs a scorer).
    pub samples: usize,
    /// Tokens a thought may have (None: the cell's `max_tokens`).
    pub max_tokens: Option<usize>,
    /// Seeds the format coins and the resampling draws (with each document's key).
    pub seed: u64,
}

impl Default for LatentSettings {
    fn default() -> Self {
        LatentSettings {
            format: "random".into(),
            mix_in_raw_ratio: 0.0,
            prefix_chunks: 3,
            template: DEFAULT_TEMPLATE.into(),
            system: DEFAULT_SYSTEM.into(),
            samples: 1,
            max_tokens: None,
            seed: 0,
        }
    }
}

/// The `latent_thoughts` augmenter (see the module doc).
#[derive(Clone, Debug)]
pub struct LatentThoughts {
    pub settings: LatentSettings,
    format: LatentFormat,
}

/// The E-step's sampling temperature: the importance weights divide by the model's own
/// q(z | x), so the thoughts must be drawn from it unmodified (the release samples at 1.0).
pub const E_STEP_TEMPERATURE: f64 = 1.0;

impl LatentThoughts {
    /// Checked settings; the message names the key at fault (`augmenter.format`, …).
    pub fn new(settings: LatentSettings) -> Result<LatentThoughts, String> {
        let format = settings.format.parse::<LatentFormat>().map_err(|e| format!("key \"augmenter.format\": {e}"))?;
        if !(0.0..=1.0).contains(&settings.mix_in_raw_ratio) {
            return Err(format!("key \"augmenter.mix_in_raw_ratio\": {} is not a probability in [0, 1]", settings.mix_in_raw_ratio));
        }
        if settings.prefix_chunks == 0 {
            return Err("key \"augmenter.prefix_chunks\": must be at least 1 (chunk 0's prefix is \"N/A\" anyway)".into());
        }
        if settings.samples == 0 {
            return Err("key \"augmenter.samples\": must be at least 1 (1 = warm start, K ≥ 2 = the E-step)".into());
        }
        if settings.max_tokens == Some(0) {
            return Err("key \"augmenter.max_tokens\": must be at least 1".into());
        }
        for slot in ["{prefix}", "{suffix}"] {
            if settings.samples == 1 && !settings.template.contains(slot) {
                return Err(format!("key \"augmenter.template\": has no {slot} slot (the template must contain both {{prefix}} and {{suffix}})"));
            }
        }
        for (key, text) in [("template", &settings.template), ("system", &settings.system)] {
            if let Some(s) = SPECIAL_TOKENS.iter().find(|s| text.contains(**s)) {
                return Err(format!("key \"augmenter.{key}\": contains the special token {s}"));
            }
        }
        Ok(LatentThoughts { settings, format })
    }

    /// From a script's settings map (a JSON object; `name` is allowed and ignored).
    pub fn from_json(v: &serde_json::Value) -> Result<LatentThoughts, String> {
        let Some(map) = v.as_object() else {
            return Err("key \"augmenter\": latent_thoughts settings must be a map".into());
        };
        for k in map.keys() {
            if !KEYS.contains(&k.as_str()) {
                return Err(crate::keys::unknown_key("augmenter.", k, &KEYS));
            }
        }
        let mut map = map.clone();
        map.remove("name");
        let settings: LatentSettings = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("key \"augmenter\": {e}"))?;
        LatentThoughts::new(settings)
    }

    /// E-step mode (K ≥ 2 samples per chunk, scored and resampled).
    pub fn is_e_step(&self) -> bool {
        self.settings.samples >= 2
    }

    /// The warm-start prompt of one (prefix, chunk): the system text, a blank line, the
    /// template with its slots filled in one pass (a slot-like string inside the document
    /// stays text), a blank line.
    pub fn warm_prompt(&self, prefix: &str, suffix: &str) -> String {
        let mut out = String::new();
        if !self.settings.system.is_empty() {
            out.push_str(&self.settings.system);
            out.push_str("\n\n");
        }
        let mut rest = self.settings.template.as_str();
        while let Some(p) = rest.find('{') {
            out.push_str(&rest[..p]);
            let tail = &rest[p..];
            if let Some(t) = tail.strip_prefix("{prefix}") {
                out.push_str(prefix);
                rest = t;
            } else if let Some(t) = tail.strip_prefix("{suffix}") {
                out.push_str(suffix);
                rest = t;
            } else {
                out.push('{');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out.push_str("\n\n");
        out
    }

    /// The per-document random stream (format coins, resampling draws).
    fn doc_rng(&self, doc: &SourceText, salt: u64) -> ChaCha20Rng {
        let mut h = blake3::Hasher::new();
        h.update(b"dctk/latent_thoughts/v1\0");
        h.update(&self.settings.seed.to_le_bytes());
        h.update(&doc.key.to_le_bytes());
        h.update(&salt.to_le_bytes());
        let b = h.finalize();
        ChaCha20Rng::from_seed(*b.as_bytes())
    }

    fn doc_name(doc: &SourceText) -> String {
        format!("document {} of domain `{}`", doc.index, doc.domain)
    }

    fn check_source(doc: &SourceText) -> Result<()> {
        if let Some(s) = SPECIAL_TOKENS.iter().find(|s| doc.text.contains(**s)) {
            bail!("{}: already contains the special token {s}; latent_thoughts could not tell it from its own delimiters", Self::doc_name(doc));
        }
        Ok(())
    }
}

/// The E-step's posterior prompt for chunk x given its prefix: `prefix SoL EoL x SoL
/// POSTERIOR` (just `x SoL POSTERIOR` when there is no prefix), whose continuation up to EoL
/// is a thought z ~ q(z | x) (BoLT release, `apps/main/latent_bootstrap.py`:
/// `suffix_delimiter`, `generation_prefix`).
pub fn posterior_prompt(prefix: &str, chunk: &str) -> String {
    if prefix.is_empty() || prefix == "N/A" {
        format!("{chunk}{SOL}{POSTERIOR}")
    } else {
        format!("{prefix}{SOL}{EOL}{chunk}{SOL}{POSTERIOR}")
    }
}

/// The E-step's joint text scored after the prefix, log p(z, x | prefix): `SoL PRIOR z EoL x`
/// (`joint_prefix`, `joint_suffix` in the release).
pub fn joint_continuation(z: &str, chunk: &str) -> String {
    format!("{SOL}{PRIOR}{z}{EOL}{chunk}")
}

/// A generated thought as the formats use it: cut at the first special token (a model that
/// writes one has ended its thought; left in, it would break the format), and, for the warm
/// start's free-form answers, trimmed.
fn clean_thought(text: &str, trim: bool) -> String {
    let cut = SPECIAL_TOKENS.iter().filter_map(|s| text.find(*s)).min().unwrap_or(text.len());
    let t = &text[..cut];
    if trim { t.trim() } else { t }.to_string()
}

impl Augmenter for LatentThoughts {
    fn name(&self) -> &str {
        NAME
    }

    fn identity(&self) -> serde_json::Value {
        serde_json::json!({"augmenter": NAME, "version": 1, "settings": self.settings})
    }

    /// One request per chunk (warm start: the BoLT prompt) or K per chunk (E-step: the
    /// posterior prompt at temperature 1, stopping at EoL), in chunk order. A pure function of
    /// the text and the settings.
    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        /// Context tokens an E-step request keeps free beyond its completion (see below).
        const E_STEP_RESERVE_TOKENS: usize = 8;
        Self::check_source(doc)?;
        let c = Chunking::of(doc.text);
        let mut out = Vec::new();
        for i in 0..c.len() {
            let prefix = c.prefix(i, self.settings.prefix_chunks);
            let x = c.chunk(i);
            if self.is_e_step() {
                let prompt = posterior_prompt(&prefix, &x);
                for k in 0..self.settings.samples {
                    let mut r = AugRequest::new(prompt.clone(), format!("chunk={i},k={k}"));
                    r.max_tokens = self.settings.max_tokens;
                    r.temperature = Some(E_STEP_TEMPERATURE);
                    r.stop = Some(vec![EOL.to_string()]);
                    // Scoring re-encodes the thought inside `SoL PRIOR z EoL x`: keep room for
                    // the delimiters and for a re-encoding a few tokens longer than decoded.
                    r.reserve_tokens = E_STEP_RESERVE_TOKENS + self.settings.max_tokens.unwrap_or(0) / 4;
                    out.push(r);
                }
            } else {
                let mut r = AugRequest::new(self.warm_prompt(&prefix, &x), format!("chunk={i}"));
                r.max_tokens = self.settings.max_tokens;
                out.push(r);
            }
        }
        Ok(out)
    }

    fn assemble(&self, doc: &SourceText, answers: &[AugAnswer], scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        Self::check_source(doc)?;
        let name = Self::doc_name(doc);
        let c = Chunking::of(doc.text);
        let k = self.settings.samples;
        let n = c.len();
        if answers.len() != n * k {
            bail!("{name}: {} answers for {n} chunks × {k} samples", answers.len());
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let chunks = c.chunks();
        let mut stats = BTreeMap::new();
        stats.insert("chunks".to_string(), n as f64);
        let truncated = answers.iter().filter(|a| a.finish_reason == "length").count();
        stats.insert("thoughts_truncated".to_string(), truncated as f64);
        let (thoughts, chosen, elbos) = if self.is_e_step() {
            let scorer = scorer.ok_or_else(|| anyhow!("{name}: latent_thoughts with samples: {k} (the E-step) scores its samples with the generator's model, so it needs a local generator"))?;
            let mut items = Vec::with_capacity(2 * n * k);
            let candidates: Vec<String> = answers.iter().map(|a| clean_thought(a.text, false)).collect();
            for i in 0..n {
                let prefix = c.prefix(i, self.settings.prefix_chunks);
                let joint_context = if i == 0 { String::new() } else { prefix.clone() };
                let q_prompt = posterior_prompt(&prefix, &chunks[i]);
                for z in &candidates[i * k..(i + 1) * k] {
                    items.push((joint_context.clone(), joint_continuation(z, &chunks[i])));
                    items.push((q_prompt.clone(), z.clone()));
                }
            }
            let scores = scorer.score(&items).with_context(|| format!("{name}: scoring its {} latent samples", n * k))?;
            if scores.len() != items.len() {
                bail!("{name}: the scorer returned {} scores for {} items", scores.len(), items.len());
            }
            let mut rng = self.doc_rng(doc, 1);
            let (mut thoughts, mut chosen, mut elbos) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..n {
                let s = &scores[2 * i * k..2 * (i + 1) * k];
                let log_p: Vec<f64> = s.iter().step_by(2).copied().collect();
                let log_q: Vec<f64> = s.iter().skip(1).step_by(2).copied().collect();
                let u: f64 = rng.random();
                let r = importance_resample(&log_p, &log_q, u).with_context(|| format!("{name}, chunk {i}"))?;
                thoughts.push(candidates[i * k + r.chosen].clone());
                chosen.push(i * k + r.chosen);
                elbos.push(r.elbo);
            }
            stats.insert("elbo_sum".to_string(), elbos.iter().sum());
            (thoughts, chosen, elbos)
        } else {
            (answers.iter().map(|a| clean_thought(a.text, true)).collect(), (0..n).collect(), Vec::new())
        };
        let f = format_document(&chunks, &thoughts, self.format, self.settings.mix_in_raw_ratio, &mut self.doc_rng(doc, 0));
        let meta = serde_json::json!({
            "chunks": n, "bounds": c.bounds, "chunk_seed": c.seed, "format": self.format.as_str(),
            "raw": f.raw, "prior": f.prior, "chosen": chosen, "elbo": elbos,
        });
        let mut docs: Vec<AugDoc> = if self.format == LatentFormat::Pure && !f.raw {
            // One document per (non-empty) thought, made from its own request.
            thoughts
                .iter()
                .zip(&chosen)
                .filter(|(z, _)| !z.is_empty())
                .map(|(z, &u)| AugDoc { text: z.clone(), uses: vec![u], meta: meta.clone(), stats: BTreeMap::new() })
                .collect()
        } else {
            f.texts.into_iter().map(|t| AugDoc { text: t, uses: chosen.clone(), meta: meta.clone(), stats: BTreeMap::new() }).collect()
        };
        // Stats are summed over output documents: they go on the first one only.
        if let Some(first) = docs.first_mut() {
            first.stats = stats;
        }
        Ok(docs)
    }

    fn special_tokens(&self) -> Vec<String> {
        SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> SourceText<'_> {
        SourceText { domain: "math", index: 3, key: dctk_data::manifest::doc_key(text), text }
    }

    const TEXT: &str = "We want the sum 1 + 2. It is 3. Now double it. That gives 6.\n\nNext, square 3. The answer is 9. Check: 3 × 3 = 9. Good.";

    #[test]
    fn settings_are_checked_and_name_the_key() {
        let ok = LatentThoughts::from_json(&serde_json::json!({"name": "latent_thoughts", "format": "prior_only", "samples": 4})).unwrap();
        assert!(ok.is_e_step());
        let e = LatentThoughts::from_json(&serde_json::json!({"formt": "random"})).unwrap_err();
        assert!(e.contains("augmenter.formt") && e.contains("augmenter.format"), "{e}");
        let e = LatentThoughts::from_json(&serde_json::json!({"format": "both"})).unwrap_err();
        assert!(e.contains("augmenter.format") && e.contains("prior_only"), "{e}");
        let e = LatentThoughts::from_json(&serde_json::json!({"template": "only {prefix}"})).unwrap_err();
        assert!(e.contains("augmenter.template") && e.contains("{suffix}"), "{e}");
        assert!(LatentThoughts::from_json(&serde_json::json!({"mix_in_raw_ratio": 1.5})).unwrap_err().contains("mix_in_raw_ratio"));
        assert!(LatentThoughts::from_json(&serde_json::json!({"samples": 0})).unwrap_err().contains("samples"));
    }

    #[test]
    fn warm_start_plans_one_bolt_prompt_per_chunk_deterministically() {
        let a = LatentThoughts::new(LatentSettings::default()).unwrap();
        let d = doc(TEXT);
        let plan = a.plan(&d).unwrap();
        let c = Chunking::of(TEXT);
        assert_eq!(plan.len(), c.len());
        assert_eq!(plan, a.plan(&d).unwrap());
        assert!(plan[0].prompt.starts_with(DEFAULT_SYSTEM));
        assert!(plan[0].prompt.contains(&format!("### Prefix:\nN/A\n\n### Suffix:\n{}\n\n### Your turn:", c.chunk(0))), "{}", plan[0].prompt);
        assert_eq!(plan[0].tag, "chunk=0");
        // A slot-like string inside the document stays text.
        let p = a.warm_prompt("has {suffix} in it", "x");
        assert!(p.contains("### Prefix:\nhas {suffix} in it\n\n### Suffix:\nx\n\n"), "{p}");
    }

    #[test]
    fn e_step_plans_k_posterior_prompts_per_chunk() {
        let a = LatentThoughts::new(LatentSettings { samples: 2, max_tokens: Some(12), ..Default::default() }).unwrap();
        let plan = a.plan(&doc(TEXT)).unwrap();
        let c = Chunking::of(TEXT);
        assert_eq!(plan.len(), 2 * c.len());
        assert_eq!(plan[0].prompt, format!("{}<|START_OF_LATENT|><|POSTERIOR_PREFIX|>", c.chunk(0)));
        assert_eq!(plan[0].prompt, plan[1].prompt);
        assert_eq!((plan[1].tag.as_str(), plan[1].max_tokens, plan[1].temperature), ("chunk=0,k=1", Some(12), Some(1.0)));
        assert_eq!(plan[1].stop, Some(vec![EOL.to_string()]));
        if c.len() > 1 {
            assert_eq!(plan[2].prompt, format!("{}<|START_OF_LATENT|><|END_OF_LATENT|>{}<|START_OF_LATENT|><|POSTERIOR_PREFIX|>", c.chunk(0), c.chunk(1)));
        }
    }

    #[test]
    fn a_source_with_a_special_token_is_refused_by_name() {
        let a = LatentThoughts::new(LatentSettings::default()).unwrap();
        let e = a.plan(&doc("text <|END_OF_LATENT|> more")).unwrap_err().to_string();
        assert!(e.contains("document 3 of domain `math`") && e.contains("<|END_OF_LATENT|>"), "{e}");
    }

    /// A scorer with known answers: log p and log q from the continuation's length.
    struct LengthScorer;
    impl Scorer for LengthScorer {
        fn score(&self, items: &[(String, String)]) -> Result<Vec<f64>> {
            // Joint items start with SoL PRIOR; posterior items are the bare thought.
            Ok(items.iter().map(|(_, c)| if c.starts_with(SOL) { -(c.len() as f64) / 10.0 } else { -1.0 }).collect())
        }
    }

    #[test]
    fn e_step_assembles_with_resampling_and_elbo_stats() {
        let a = LatentThoughts::new(LatentSettings { samples: 2, format: "prior_only".into(), ..Default::default() }).unwrap();
        let d = doc(TEXT);
        let n = Chunking::of(TEXT).len();
        let texts: Vec<String> = (0..2 * n).map(|j| if j % 2 == 0 { "short".into() } else { "a much longer thought text".into() }).collect();
        let answers: Vec<AugAnswer> = texts.iter().map(|t| AugAnswer { text: t, finish_reason: "stop" }).collect();
        assert!(a.assemble(&d, &answers, None).unwrap_err().to_string().contains("local generator"));
        let out = a.assemble(&d, &answers, Some(&LengthScorer)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].stats["chunks"], n as f64);
        // Per chunk the ELBO is logsumexp(log w) − ln 2 with log w_k = −len_k/10 + 1.
        let c = Chunking::of(TEXT);
        let mut want = 0.0;
        for i in 0..n {
            let w: Vec<f64> = ["short", "a much longer thought text"].iter().map(|z| -(joint_continuation(z, &c.chunk(i)).len() as f64) / 10.0 + 1.0).collect();
            want += importance_resample(&w, &[0.0, 0.0], 0.5).unwrap().elbo;
        }
        assert!((out[0].stats["elbo_sum"] - want).abs() < 1e-9);
        assert_eq!(out, a.assemble(&d, &answers, Some(&LengthScorer)).unwrap());
        assert!(out[0].text.starts_with(SOL));
        assert_eq!(out[0].uses.len(), n);
    }

    #[test]
    fn warm_start_assembles_the_format_and_pure_makes_one_document_per_thought() {
        let d = doc(TEXT);
        let c = Chunking::of(TEXT);
        let n = c.len();
        let texts: Vec<String> = (0..n).map(|i| format!(" thought {i} <|END_OF_LATENT|>junk")).collect();
        let answers: Vec<AugAnswer> = texts.iter().map(|t| AugAnswer { text: t, finish_reason: "stop" }).collect();
        let a = LatentThoughts::new(LatentSettings { format: "posterior_only".into(), ..Default::default() }).unwrap();
        let out = a.assemble(&d, &answers, None).unwrap();
        let want: String = (0..n).map(|i| format!("{}{SOL}thought {i}{EOL}", c.chunk(i))).collect();
        assert_eq!(out[0].text, want);
        assert!(!out[0].stats.contains_key("elbo_sum"));
        let pure = LatentThoughts::new(LatentSettings { format: "pure".into(), ..Default::default() }).unwrap();
        let out = pure.assemble(&d, &answers, None).unwrap();
        assert_eq!(out.iter().map(|o| o.text.clone()).collect::<Vec<_>>(), (0..n).map(|i| format!("thought {i}")).collect::<Vec<_>>());
        assert_eq!(out.iter().map(|o| o.stats.get("chunks").copied().unwrap_or(0.0)).sum::<f64>(), n as f64);
        assert!(a.assemble(&d, &answers[..n - 1], None).is_err());
    }
}
