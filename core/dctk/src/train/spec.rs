//! `TrainSpec`: everything one training run needs, as plain data.
//!
//! One definition, several uses: a script's `train(#{ ... })` map is parsed into it
//! (unknown keys and wrong types are errors naming the key), it is hashed into the
//! run's id, written to the run's `manifest.ron`, and read back on resume.
//!
//! Every field is documented here because this *is* the manual for `train(#{...})`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::corpus::{AutoIngest, CorpusSource, DataSpec, Selection};

use super::model::{ModelConfig, VocabLayout, GPT2_VOCAB, PRESETS};
use super::schedule::{Schedule, ScheduleKind};

/// The run whose final weights a run starts from (`init_from`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitFrom {
    /// The source run's id (what decides the weights).
    pub run: String,
    /// Its directory on the planning machine.
    pub dir: String,
}

/// A model is a preset name (`"tiny"`, `"72m"`, …) or an explicit shape.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelChoice {
    Preset(String),
    Shape {
        n_layer: i64,
        d_model: i64,
        n_head: i64,
        /// SwiGLU hidden width; default 256·⌈(8d/3)/256⌉.
        d_ff: Option<i64>,
    },
}

/// A preset is written as its name, a shape as a plain map (`{"n_layer": 1, "d_model": 64,
/// "n_head": 2}`, `d_ff` only when set), never as a named struct variant: a RON manifest
/// must read back through the "name or map" form below, as a script's map does.
impl Serialize for ModelChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ModelChoice::Preset(name) => s.serialize_str(name),
            ModelChoice::Shape { n_layer, d_model, n_head, d_ff } => {
                let mut m = s.serialize_map(Some(3 + d_ff.is_some() as usize))?;
                m.serialize_entry("n_layer", n_layer)?;
                m.serialize_entry("d_model", d_model)?;
                m.serialize_entry("n_head", n_head)?;
                if let Some(ff) = d_ff {
                    m.serialize_entry("d_ff", ff)?;
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ModelChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            n_layer: i64,
            d_model: i64,
            n_head: i64,
            #[serde(default)]
            d_ff: Option<i64>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Preset(String),
            Shape(Shape),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a preset name or a map #{n_layer, d_model, n_head} (optional d_ff)")
        })? {
            Form::Preset(name) => Ok(ModelChoice::Preset(name)),
            Form::Shape(s) => Ok(ModelChoice::Shape { n_layer: s.n_layer, d_model: s.d_model, n_head: s.n_head, d_ff: s.d_ff }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// The cell's label in plans and tables (default: `file:line` of the `train` call). Not part of the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Preset name or `#{n_layer, d_model, n_head}`.
    #[serde(default = "d::model")]
    pub model: ModelChoice,
    /// The data: an ingested corpus directory (it has `manifest.ron`; see `dctk data ingest`),
    /// or raw input, a `.jsonl` file or a directory of `.jsonl` files (one domain per file, named
    /// by its stem), which is ingested with GPT-2 into `.dctk/corpora/<id>/` beside the runs
    /// root (content addressed: reused while the input files, `text_field` and `val_fraction`
    /// are unchanged).
    /// Relative paths are relative to the script.
    pub corpus: String,
    /// Synthetic streams mixed into the real corpus (Kim et al. 2026, arXiv 2603.18534):
    /// `[gen1, "gen/corpus", ...]`, `generate` handles or corpus paths (ingested corpora or raw
    /// input, relative to the script). Every domain of each joins the run as a domain of its
    /// own, of kind `Synthetic` (a corpus given here whose manifest says `Real` is synthetic
    /// in this run), with its own unique budget (all its training tokens unless
    /// `synthetic_unique_tokens` or its `domains` entry says otherwise) and its own epochs. A
    /// name already taken (by a real domain or an earlier stream) becomes `name.2`,
    /// `name.3`, … in the order given. All corpora must share the real corpus's tokenizer.
    /// Synthetic domains are trained on, never evaluated: `final_val_loss` and the curve are
    /// the real domains' held-out loss. Needs `mix_ratio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synthetic: Vec<String>,
    /// The fraction of *training tokens* drawn from the synthetic streams, in [0, 1]: the real
    /// domains' weights are scaled to sum to 1 − mix_ratio, the synthetic domains' to
    /// mix_ratio (split between streams by their budgets' sizes, or by their `domains`
    /// weights when any is given). `epochs` keeps meaning passes over the *real* budget: the
    /// run takes floor(real epoch_tokens × epochs / (1 − mix_ratio) / (batch_size × seq_len))
    /// steps. mix_ratio = 1 trains on the synthetic streams only: the real domains are
    /// evaluation-only (weight 0) and `epochs` counts passes over the synthetic streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix_ratio: Option<f64>,
    /// The unique-token budget over the synthetic domains that do not set their own, split
    /// between them by their training tokens (default: each serves all its training tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_unique_tokens: Option<u64>,
    /// Raw input only: the JSON field holding each document's text.
    #[serde(default = "d::text_field")]
    pub text_field: String,
    /// The unique-token budget, in total over the selected domains: each domain serves a
    /// deterministic nested subset (a smaller budget is a prefix of a larger one) of its
    /// training split. Split across domains by weight (largest remainder, so the parts sum to
    /// exactly this), except for domains that set their own `unique_tokens`.
    pub unique_tokens: u64,
    /// Passes over the data (may be fractional). One *epoch*, here and everywhere else (epoch
    /// ends, `evals_per_epoch`, `epoch` in metrics, `epochs_realized`, the sampler's
    /// accounting), is one pass over the data as the sampler serves it: the budget's
    /// documents, each followed by its separator (`epoch_tokens` = unique_tokens + one
    /// separator per document). The run takes floor(epoch_tokens × epochs / (batch_size ×
    /// seq_len)) steps; `epochs_realized` differs from `epochs` only by the dropped last
    /// partial batch (see `train::plan`).
    pub epochs: f64,
    /// Which domains to train on and how: `#{ code: #{weight: 3.0}, math: #{unique_tokens:
    /// 50_000, epochs_limit: 4} }`. Per domain: `weight` (relative share of training sequences,
    /// default 1), `unique_tokens` (this domain's own budget), `epochs_limit` (serve at most this
    /// many epochs of its budget, then leave the mixture; the others' weights renormalise; the
    /// run ends early if every domain is exhausted). Default: every domain of the corpus, equal
    /// weights. Unknown names are errors listing the corpus's domains. A synthetic stream's
    /// domain (see `synthetic`) may be named too: its `weight` splits `mix_ratio` between the
    /// streams, its `unique_tokens` is its budget, its `epochs_limit` caps its passes; naming
    /// only streams keeps every real domain.
    #[serde(default)]
    pub domains: Option<BTreeMap<String, DomainChoice>>,
    /// A proportion schedule replacing the constant weights: `[#{step: 0, weights: #{code: 1.0,
    /// math: 3.0}}, #{step: 500, weights: #{code: 1.0, math: 1.0}}]`, interpolated linearly
    /// between points, constant outside. Every point names every selected domain.
    #[serde(default)]
    pub schedule_mix: Option<Vec<MixPoint>>,
    /// Let attention cross document boundaries inside a packed sequence (default true). With
    /// false, each position attends only to earlier positions of its own document (a
    /// block-diagonal causal mask); the token stream is the same either way.
    #[serde(default = "d::yes")]
    pub cross_doc_attention: bool,
    /// Validation tokens scored per domain at every evaluation (held-out documents only):
    /// floor((val_tokens − 1) / seq_len) windows of seq_len tokens. Default 4,096 per domain
    /// (the 7 bundled domains: ~29 k tokens per evaluation).
    #[serde(default = "d::val_tokens")]
    pub val_tokens: u64,
    /// Raw input only: fraction of documents held out for validation, chosen by a hash of the
    /// document's text (an ingested corpus fixed its split at ingest).
    #[serde(default = "d::val_fraction")]
    pub val_fraction: f64,
    /// Context length in tokens.
    #[serde(default = "d::seq_len")]
    pub seq_len: i64,
    /// Sequences per optimizer step.
    #[serde(default = "d::batch_size")]
    pub batch_size: i64,
    /// Sequences per forward pass; `batch_size / micro_batch` gradient-accumulation steps.
    #[serde(default)]
    pub micro_batch: Option<i64>,
    /// Peak learning rate.
    #[serde(default = "d::lr")]
    pub lr: f64,
    /// Decoupled weight decay (AdamW), applied to all weights but embeddings and norms.
    #[serde(default = "d::weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "d::beta1")]
    pub beta1: f64,
    #[serde(default = "d::beta2")]
    pub beta2: f64,
    #[serde(default = "d::adam_eps")]
    pub adam_eps: f64,
    /// Global-norm gradient clipping threshold (0 disables).
    #[serde(default = "d::grad_clip")]
    pub grad_clip: f64,
    /// `"wsd"` (default), `"cosine"` or `"constant"`.
    #[serde(default = "d::schedule")]
    pub schedule: ScheduleKind,
    #[serde(default = "d::warmup_frac")]
    pub warmup_frac: f64,
    /// Final linear-decay fraction of the run (`wsd`).
    #[serde(default = "d::decay_frac")]
    pub decay_frac: f64,
    /// Last learning rate as a fraction of the peak (default 0.01 for wsd, 0.1 for cosine).
    #[serde(default)]
    pub final_lr_frac: Option<f64>,
    /// Dropout on embeddings, attention weights and residual branches.
    #[serde(default)]
    pub dropout: f64,
    /// Seeds initialisation, data order (per epoch) and dropout (per step).
    #[serde(default)]
    pub seed: u64,
    /// Validation evaluations per epoch (the run also evaluates at its last step).
    #[serde(default = "d::evals_per_epoch")]
    pub evals_per_epoch: u64,
    /// Evaluate every this many steps instead of `evals_per_epoch`.
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// Checkpoint every this many steps (default: at every evaluation).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// `"auto"` (bf16 on CUDA, fp32 on CPU), `"fp32"` or `"bf16"`.
    #[serde(default = "d::auto")]
    pub precision: String,
    /// `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
    #[serde(default = "d::auto")]
    pub device: String,
    /// Regularizer plugins, in order: `["mir"]` or `[#{name: "mir", settings: #{lambda: 0.4}}]`.
    /// Settings are checked against each plugin's declared settings before any step.
    #[serde(default)]
    pub regularizers: Vec<crate::plugin::regularizer::RegularizerRequest>,
    /// Start from a finished run's final weights instead of a random initialisation: a `train`
    /// handle (`init_from: warm`). The optimizer starts fresh; the model's shape and vocabulary
    /// must equal the source's (errors name the tensor). The source run's id enters this run's
    /// id (its directory does not). BoLT's M-step retrains from scratch (Ruan et al. 2025,
    /// arXiv 2503.18866, §3.2); continuing from the previous model is this option.
    #[serde(default)]
    pub init_from: Option<InitFrom>,
    /// CPU threads for libtorch; overrides `dctk run`'s split (`--threads` / `-j` per cell). Not part of the id.
    #[serde(default)]
    pub threads: Option<i32>,
    /// How CPU kernels are chosen (part of the id): `"native"` (default: the fastest kernels
    /// for this CPU; bit-identical reruns on the same CPU model) or `"portable"` (ATen at AVX2,
    /// oneMKL's compatible reproducibility branch, oneDNN at AVX2: bit-identical reruns on any
    /// x86-64 CPU with AVX2 and FMA at the same threads, slower; see `crate::cpu`).
    #[serde(default)]
    pub numerics: crate::cpu::Numerics,
}

/// One domain's settings in `domains` and a point of `schedule_mix`: data settings, defined
/// beside the [`DataSpec`] they enter.
pub use crate::corpus::{DomainChoice, MixPoint};

/// Defaults, one function per field (serde needs paths).
mod d {
    use super::*;
    pub fn model() -> ModelChoice {
        ModelChoice::Preset("tiny".into())
    }
    pub fn text_field() -> String {
        "text".into()
    }
    pub fn val_tokens() -> u64 {
        4_096
    }
    pub fn val_fraction() -> f64 {
        dctk_data::DEFAULT_VAL_FRACTION
    }
    pub fn seq_len() -> i64 {
        256
    }
    pub fn batch_size() -> i64 {
        16
    }
    pub fn lr() -> f64 {
        3e-3
    }
    pub fn weight_decay() -> f64 {
        0.1
    }
    pub fn beta1() -> f64 {
        0.9
    }
    pub fn beta2() -> f64 {
        0.95
    }
    pub fn adam_eps() -> f64 {
        1e-8
    }
    pub fn grad_clip() -> f64 {
        1.0
    }
    pub fn schedule() -> ScheduleKind {
        ScheduleKind::Wsd
    }
    pub fn warmup_frac() -> f64 {
        0.01
    }
    pub fn decay_frac() -> f64 {
        0.1
    }
    pub fn evals_per_epoch() -> u64 {
        2
    }
    pub fn yes() -> bool {
        true
    }
    pub fn auto() -> String {
        "auto".into()
    }
}

impl TrainSpec {
    /// The settings of this run that decide its data (see [`DataSpec`]), for the corpus the
    /// caller resolved `corpus` to. The one place a `TrainSpec` maps onto the data.
    /// `synthetic` are the resolved paths of [`TrainSpec::synthetic`], in its order.
    pub fn data_spec(&self, corpus: &std::path::Path, synthetic: &[std::path::PathBuf]) -> Result<DataSpec, String> {
        let positive = |key: &str, v: i64| {
            usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| format!("key \"{key}\" must be at least 1, got {v}"))
        };
        if synthetic.len() != self.synthetic.len() {
            return Err(format!("key \"synthetic\": {} corpora given, {} resolved", self.synthetic.len(), synthetic.len()));
        }
        let ingest = AutoIngest { text_field: self.text_field.clone(), val_fraction: self.val_fraction };
        Ok(DataSpec {
            source: CorpusSource { path: corpus.to_path_buf(), ingest: ingest.clone() },
            synthetic: synthetic.iter().map(|p| CorpusSource { path: p.clone(), ingest: ingest.clone() }).collect(),
            selection: Selection {
                domains: self.domains.clone(),
                unique_tokens: self.unique_tokens,
                schedule_mix: self.schedule_mix.clone(),
                val_tokens: self.val_tokens,
                seq_len: positive("seq_len", self.seq_len)?,
                batch_size: positive("batch_size", self.batch_size)?,
                cross_doc_attention: self.cross_doc_attention,
                mix_ratio: self.mix_ratio,
                synthetic_unique_tokens: self.synthetic_unique_tokens,
            },
            order_seed: self.seed,
        })
    }

    /// Parses a JSON value (from a script map or a manifest) into a spec. Errors name
    /// the key: `unknown key "lrr"`, `key "epochs": invalid type: string "4", expected f64`.
    pub fn from_json(value: serde_json::Value) -> Result<TrainSpec, String> {
        let spec: TrainSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if inner.starts_with("unknown field ") && path.contains('.') {
                // Inside `domains` or `schedule_mix`: name the map it is in.
                let parent = path.rsplit_once('.').map_or(path.as_str(), |p| p.0);
                return format!("key \"{parent}\": {inner}");
            }
            if let Some(rest) = inner.strip_prefix("unknown field ") {
                // serde says: unknown field `lrr`, expected one of `name`, `model`, ...
                let key = rest.split(',').next().unwrap_or(rest).trim_matches('`');
                return crate::keys::unknown_key("", key.trim_matches('`'), KEYS);
            }
            if inner.starts_with("missing field ") {
                let key = inner.trim_start_matches("missing field ").trim_matches('`');
                return format!("missing required key \"{key}\"");
            }
            if path == "model" || path.starts_with("model.") {
                return format!(
                    "key \"model\": expected a preset name ({}) or a map #{{n_layer, d_model, n_head}}",
                    preset_names()
                );
            }
            format!("key \"{path}\": {inner}")
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Range checks that serde's types cannot express; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        let pos_f = [("epochs", self.epochs), ("lr", self.lr), ("beta1", self.beta1), ("beta2", self.beta2)];
        for (k, v) in pos_f {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("key \"{k}\" must be a positive number, got {v}"));
            }
        }
        for (k, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if v >= 1.0 {
                return Err(format!("key \"{k}\" must be below 1, got {v}"));
            }
        }
        let frac = [
            ("val_fraction", self.val_fraction),
            ("warmup_frac", self.warmup_frac),
            ("decay_frac", self.decay_frac),
            ("dropout", self.dropout),
        ];
        for (k, v) in frac {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("key \"{k}\" must be in [0, 1), got {v}"));
            }
        }
        if self.val_fraction <= 0.0 {
            return Err("key \"val_fraction\" must be above 0: validation needs held-out documents".into());
        }
        for (k, v) in [("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip), ("adam_eps", self.adam_eps)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("key \"{k}\" must be a non-negative number, got {v}"));
            }
        }
        if let Some(f) = self.final_lr_frac {
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("key \"final_lr_frac\" must be in [0, 1], got {f}"));
            }
        }
        if self.seq_len < 2 {
            return Err(format!("key \"seq_len\" must be at least 2, got {}", self.seq_len));
        }
        if self.batch_size < 1 {
            return Err(format!("key \"batch_size\" must be at least 1, got {}", self.batch_size));
        }
        if let Some(mb) = self.micro_batch {
            if mb < 1 || self.batch_size % mb != 0 {
                return Err(format!(
                    "key \"micro_batch\" ({mb}) must be positive and divide batch_size ({})",
                    self.batch_size
                ));
            }
        }
        if self.unique_tokens < (self.seq_len as u64 + 1) {
            return Err(format!(
                "key \"unique_tokens\" ({}) must hold at least one sequence of seq_len + 1 = {} tokens",
                self.unique_tokens,
                self.seq_len + 1
            ));
        }
        if self.val_tokens < (self.seq_len as u64 + 1) {
            return Err(format!(
                "key \"val_tokens\" ({}) must hold at least one sequence of seq_len + 1 = {} tokens",
                self.val_tokens,
                self.seq_len + 1
            ));
        }
        for (name, d) in self.domains.iter().flatten() {
            if let Some(w) = d.weight {
                if !(w.is_finite() && w > 0.0) {
                    return Err(format!("key \"domains.{name}.weight\" must be a positive number, got {w}"));
                }
            }
            if d.unique_tokens == Some(0) {
                return Err(format!("key \"domains.{name}.unique_tokens\" must be at least 1"));
            }
            if d.epochs_limit == Some(0) {
                return Err(format!("key \"domains.{name}.epochs_limit\" must be at least 1 (0 would serve nothing)"));
            }
        }
        if let Some(points) = &self.schedule_mix {
            if points.is_empty() {
                return Err("key \"schedule_mix\" needs at least one point".into());
            }
            if points.windows(2).any(|w| w[0].step >= w[1].step) {
                return Err("key \"schedule_mix\": steps must increase strictly".into());
            }
            for (i, p) in points.iter().enumerate() {
                if p.weights.values().any(|w| !w.is_finite() || *w < 0.0) || p.weights.values().sum::<f64>() <= 0.0 {
                    return Err(format!("key \"schedule_mix\"[{i}].weights must be finite, ≥ 0 and not all 0"));
                }
            }
        }
        match (self.synthetic.is_empty(), self.mix_ratio) {
            (false, None) => return Err("key \"mix_ratio\": required with \"synthetic\" (the fraction of training tokens that are synthetic)".into()),
            (true, Some(_)) => return Err("key \"mix_ratio\": needs \"synthetic\" (the synthetic corpora to mix in)".into()),
            (_, Some(r)) if !(0.0..=1.0).contains(&r) => return Err(format!("key \"mix_ratio\" must be in [0, 1], got {r}")),
            _ => {}
        }
        if self.synthetic_unique_tokens.is_some() && self.synthetic.is_empty() {
            return Err("key \"synthetic_unique_tokens\": needs \"synthetic\"".into());
        }
        if self.synthetic_unique_tokens == Some(0) {
            return Err("key \"synthetic_unique_tokens\" must be at least 1".into());
        }
        if self.evals_per_epoch == 0 && self.eval_every.is_none() {
            return Err("key \"evals_per_epoch\" must be at least 1 (or set eval_every)".into());
        }
        if self.eval_every == Some(0) || self.checkpoint_every == Some(0) {
            return Err("keys \"eval_every\" and \"checkpoint_every\" must be at least 1".into());
        }
        if !["auto", "fp32", "bf16"].contains(&self.precision.as_str()) {
            return Err(format!("key \"precision\" must be \"auto\", \"fp32\" or \"bf16\", got \"{}\"", self.precision));
        }
        let device_ok = ["auto", "cpu", "cuda"].contains(&self.device.as_str())
            || self.device.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
        if !device_ok {
            return Err(format!("key \"device\" must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got \"{}\"", self.device));
        }
        if let Some(t) = self.threads {
            if t < 1 {
                return Err(format!("key \"threads\" must be at least 1, got {t}"));
            }
        }
        // The shape does not depend on the vocabulary: check it with GPT-2's.
        self.model_config(&VocabLayout::new(GPT2_VOCAB, &[])).map(|_| ())
    }

    /// The model shape with `vocab.padded` rows of embedding and head (the layout comes from
    /// the corpus's tokenizer and the regularizers' extra tokens) and this run's context.
    pub fn model_config(&self, vocab: &VocabLayout) -> Result<ModelConfig, String> {
        let cfg = match &self.model {
            ModelChoice::Preset(name) => {
                let mut cfg = ModelConfig::preset(name, self.seq_len).ok_or_else(|| {
                    format!("key \"model\": unknown preset \"{name}\"; presets: {}", preset_names())
                })?;
                cfg.vocab_size = vocab.padded;
                cfg
            }
            ModelChoice::Shape { n_layer, d_model, n_head, d_ff } => {
                let mut cfg = ModelConfig::new(*n_layer, *d_model, *n_head, vocab.padded, self.seq_len);
                if let Some(ff) = d_ff {
                    cfg.d_ff = *ff;
                }
                cfg
            }
        };
        cfg.validate().map_err(|e| format!("key \"model\": {e}"))?;
        Ok(cfg)
    }

    /// Training tokens (all streams) per token of the epoch basis: 1 / (1 − mix_ratio), or 1
    /// without synthetic streams and at mix_ratio = 1 (where an epoch is a pass over the
    /// synthetic streams). Kim et al. 2026 (arXiv 2603.18534; marin `get_real_tokens`):
    /// total = REAL·epochs / (1 − mix_ratio).
    pub fn epoch_scale(&self) -> f64 {
        match self.mix_ratio {
            Some(r) if r < 1.0 => 1.0 / (1.0 - r),
            _ => 1.0,
        }
    }

    pub fn micro_batch(&self) -> i64 {
        self.micro_batch.unwrap_or(self.batch_size)
    }

    pub fn schedule(&self, total_steps: u64) -> Schedule {
        Schedule {
            kind: self.schedule,
            peak_lr: self.lr,
            total_steps,
            warmup_frac: self.warmup_frac,
            decay_frac: self.decay_frac,
            final_lr_frac: self.final_lr_frac.unwrap_or(Schedule::default_final_frac(self.schedule)),
        }
    }
}

/// The keys `train(#{...})` accepts, for error messages and docs.
pub const KEYS: &[&str] = &[
    "name", "model", "corpus", "synthetic", "mix_ratio", "synthetic_unique_tokens", "text_field", "unique_tokens", "epochs", "domains", "schedule_mix",
    "cross_doc_attention", "val_tokens", "val_fraction",
    "seq_len", "batch_size", "micro_batch", "lr", "weight_decay", "beta1", "beta2", "adam_eps",
    "grad_clip", "schedule", "warmup_frac", "decay_frac", "final_lr_frac", "dropout", "seed",
    "evals_per_epoch", "eval_every", "checkpoint_every", "precision", "device", "threads", "numerics", "regularizers",
    "init_from",
];

fn preset_names() -> String {
    PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"corpus": "c.jsonl", "unique_tokens": 10000, "epochs": 2})
    }

    #[test]
    fn defaults_fill_in() {
        let s = TrainSpec::from_json(base()).unwrap();
        assert_eq!(s.model, ModelChoice::Preset("tiny".into()));
        assert_eq!(s.schedule, ScheduleKind::Wsd);
    }

    #[test]
    fn unknown_key_is_named_with_suggestion() {
        let mut v = base();
        v["lrr"] = json!(0.1);
        let e = TrainSpec::from_json(v).unwrap_err();
        assert!(e.contains("\"lrr\"") && e.contains("did you mean \"lr\""), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let mut v = base();
        v["epochs"] = json!("four");
        let e = TrainSpec::from_json(v).unwrap_err();
        assert!(e.starts_with("key \"epochs\""), "{e}");
        let mut v = base();
        v["model"] = json!(3);
        let e = TrainSpec::from_json(v).unwrap_err();
        assert!(e.contains("key \"model\""), "{e}");
    }

    #[test]
    fn missing_and_range_errors() {
        let e = TrainSpec::from_json(json!({"corpus": "c", "epochs": 1})).unwrap_err();
        assert!(e.contains("missing required key \"unique_tokens\""), "{e}");
        let mut v = base();
        v["micro_batch"] = json!(5);
        assert!(TrainSpec::from_json(v).unwrap_err().contains("micro_batch"));
        let mut v = base();
        v["model"] = json!("huge");
        assert!(TrainSpec::from_json(v).unwrap_err().contains("unknown preset \"huge\""));
    }

    #[test]
    fn domain_keys_parse_and_errors_name_the_key() {
        let mut v = base();
        v["domains"] = json!({"code": {"weight": 3.0}, "math": {"unique_tokens": 500, "epochs_limit": 2}});
        v["cross_doc_attention"] = json!(false);
        let s = TrainSpec::from_json(v.clone()).unwrap();
        let d = s.domains.as_ref().unwrap();
        assert_eq!(d["code"].weight(), 3.0);
        assert_eq!(d["math"].weight(), 1.0);
        assert_eq!(d["math"].epochs_limit, Some(2));
        assert!(!s.cross_doc_attention);
        v["domains"]["code"]["wieght"] = json!(1.0);
        let e = TrainSpec::from_json(v.clone()).unwrap_err();
        assert!(e.starts_with("key \"domains.code\": unknown field `wieght`"), "{e}");
        v["domains"] = json!({"code": {"weight": -1.0}});
        let e = TrainSpec::from_json(v.clone()).unwrap_err();
        assert!(e.contains("key \"domains.code.weight\" must be a positive number"), "{e}");
        v["domains"] = json!({"code": {"epochs_limit": 0}});
        assert!(TrainSpec::from_json(v.clone()).unwrap_err().contains("domains.code.epochs_limit"));
        v["domains"] = Default::default();
        v["schedule_mix"] = json!([{"step": 5, "weights": {"a": 1.0}}, {"step": 5, "weights": {"a": 2.0}}]);
        assert!(TrainSpec::from_json(v).unwrap_err().contains("schedule_mix"));
    }

    #[test]
    fn synthetic_needs_a_mix_ratio_in_range_and_scales_the_epoch() {
        let mut v = base();
        v["synthetic"] = json!(["gen/corpus"]);
        assert!(TrainSpec::from_json(v.clone()).unwrap_err().contains("key \"mix_ratio\": required"));
        v["mix_ratio"] = json!(1.5);
        assert!(TrainSpec::from_json(v.clone()).unwrap_err().contains("key \"mix_ratio\" must be in [0, 1]"));
        v["mix_ratio"] = json!(0.75);
        let s = TrainSpec::from_json(v.clone()).unwrap();
        assert_eq!(s.epoch_scale(), 4.0, "total = REAL·epochs / (1 − mix_ratio)");
        let d = s.data_spec(std::path::Path::new("c"), &["/abs/gen/corpus".into()]).unwrap();
        assert_eq!(d.synthetic.len(), 1);
        assert_eq!(d.selection.mix_ratio, Some(0.75));
        v["mix_ratio"] = json!(1.0);
        assert_eq!(TrainSpec::from_json(v.clone()).unwrap().epoch_scale(), 1.0, "mix 1: epochs count synthetic passes");
        let mut w = base();
        w["mix_ratio"] = json!(0.5);
        assert!(TrainSpec::from_json(w.clone()).unwrap_err().contains("needs \"synthetic\""));
        w["mix_ratio"] = Default::default();
        w["synthetic_unique_tokens"] = json!(100);
        assert!(TrainSpec::from_json(w).unwrap_err().contains("synthetic_unique_tokens"));
        // Without synthetic streams nothing new is serialized (manifests and ids stay as they were).
        let plain = serde_json::to_value(TrainSpec::from_json(base()).unwrap()).unwrap();
        assert!(plain.get("synthetic").is_none() && plain.get("mix_ratio").is_none());
    }

    fn data_spec_of(extra: serde_json::Value) -> TrainSpec {
        let mut base = json!({"corpus": "c", "unique_tokens": 10_000, "epochs": 1});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        TrainSpec::from_json(base).unwrap()
    }

    #[test]
    fn settings_that_do_not_decide_the_data_leave_the_data_spec_unchanged() {
        let base = data_spec_of(json!({})).data_spec(std::path::Path::new("c"), &[]).unwrap();
        for other in [json!({"lr": 1e-4}), json!({"weight_decay": 0.5}), json!({"model": "micro"}), json!({"epochs": 3}), json!({"dropout": 0.1})] {
            assert_eq!(data_spec_of(other.clone()).data_spec(std::path::Path::new("c"), &[]).unwrap(), base, "{other}");
        }
        let seeded = data_spec_of(json!({"seed": 7})).data_spec(std::path::Path::new("c"), &[]).unwrap();
        assert_eq!(seeded.selection, base.selection, "the seed changes the data order only");
        assert_eq!(seeded.order_seed, 7);
        for data in [json!({"val_tokens": 2048}), json!({"seq_len": 128}), json!({"batch_size": 4}), json!({"cross_doc_attention": false}), json!({"val_fraction": 0.2})] {
            assert_ne!(data_spec_of(data.clone()).data_spec(std::path::Path::new("c"), &[]).unwrap(), base, "{data}");
        }
    }
}
