//! A run's checkpoint and tokenizer, loaded for decoding: what `dctk sample`, `dctk score`,
//! `dctk serve` and the `local` generator use.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};

use super::decode::{Completion, DecodeOptions, Flow, GenRequest, TokenEvent};
use crate::study::plan::Manifest;
use crate::train::checkpoint;
use crate::train::model::VocabLayout;
use crate::train::{Gpt, ModelConfig};
use dctk_data::{CorpusManifest, Tokenizer, TokenizerInfo};

/// A trained (or checkpointed) dctk model with its tokenizer.
pub struct LoadedModel {
    pub run_id: String,
    pub run_dir: PathBuf,
    /// blake3 (hex) of the checkpoint's `model.safetensors`: the model's identity in
    /// request caches.
    pub weights_blake3: String,
    /// Optimizer steps the checkpoint holds.
    pub step: u64,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The document separator, which ends a completion.
    pub eot_id: u32,
    pub device: Device,
    /// The ids the model was trained with (tokenizer ids, the corpus's special tokens,
    /// plugins' extra ids, padding).
    pub vocab: VocabLayout,
    /// What the corpus manifest records of the tokenizer, and the corpus directory.
    pub tokenizer_info: TokenizerInfo,
    pub corpus_dir: PathBuf,
    pub(crate) model: Gpt,
    /// Owns the model's tensors.
    pub(crate) vs: nn::VarStore,
}

pub(crate) use crate::corpus::locate_corpus;

impl LoadedModel {
    /// Loads `runs/<id>` (a finished cell, or one with a checkpoint) onto `device`.
    /// The weights are loaded in fp32 on the CPU, and as saved (bf16 or fp32) on a GPU.
    pub fn open(run_dir: &Path, device: Device) -> Result<LoadedModel> {
        if !run_dir.join("manifest.ron").exists() {
            bail!("{}: not a dctk run directory (no manifest.ron)", run_dir.display());
        }
        let manifest_path = run_dir.join("manifest.ron");
        let text = fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
        let manifest: Manifest = ron::from_str(&text).with_context(|| format!("parsing {}", manifest_path.display()))?;
        let Some(ckpt) = checkpoint::find(run_dir) else {
            bail!("{}: no checkpoint yet (the cell has not reached its first checkpoint)", run_dir.display());
        };
        let state = checkpoint::read_state(&ckpt)?;
        let model_file = ckpt.join("model.safetensors");
        // One read of the weights file for both its identity and its metadata.
        let bytes = fs::read(&model_file).with_context(|| format!("reading {}", model_file.display()))?;
        let weights_blake3 = blake3::hash(&bytes).to_hex().to_string();
        let meta = checkpoint::meta_of(&bytes, &model_file)?
            .with_context(|| format!("{}: no `dctk` metadata (written by an older dctk)", model_file.display()))?;
        drop(bytes);

        let corpus_dir = locate_corpus(run_dir, &manifest.data.corpus_dir);
        let corpus = CorpusManifest::read(&corpus_dir).with_context(|| {
            format!("{}: the run's corpus (for its tokenizer) is not readable; was it moved?", corpus_dir.display())
        })?;
        // The run's special tokens (over all its corpora: a plain corpus mixed with a
        // thought-augmented stream has the stream's BoLT delimiters) have rows in the model.
        let specials = &manifest.data.special_tokens;
        let tokenizer = Tokenizer::from_info(&corpus.tokenizer, &corpus_dir)
            .and_then(|t| t.with_special_tokens(specials))
            .with_context(|| format!("{}: loading the run's tokenizer", corpus_dir.display()))?;
        if specials.len() as i64 != meta.vocab.corpus_specials() {
            bail!(
                "{}: the run's data has {} special tokens but the model was trained with {}",
                run_dir.display(),
                specials.len(),
                meta.vocab.corpus_specials()
            );
        }
        if i64::from(tokenizer.vocab_size()) != meta.vocab.base {
            bail!(
                "{}: the tokenizer has {} ids but the model was trained with {}",
                corpus_dir.display(),
                tokenizer.vocab_size(),
                meta.vocab.base
            );
        }

        let mut vs = nn::VarStore::new(device);
        let model = Gpt::new(&vs, &meta.model_config, 0.0);
        let saved = checkpoint::read_weights(&model_file)?;
        // The saved kind is kept on a GPU (bf16 stays bf16); the CPU computes in fp32.
        let saved_kind = saved.values().next().map(|t| t.kind()).unwrap_or(Kind::Float);
        if device != Device::Cpu && saved_kind == Kind::BFloat16 {
            vs.set_kind(Kind::BFloat16);
        }
        checkpoint::copy_weights(&saved, &model_file, &vs)?;
        vs.freeze();
        Ok(LoadedModel {
            run_id: manifest.run_id.clone(),
            run_dir: run_dir.to_path_buf(),
            weights_blake3,
            step: state.step,
            config: meta.model_config.clone(),
            eot_id: tokenizer.eot_id(),
            tokenizer,
            device,
            vocab: meta.vocab.clone(),
            tokenizer_info: corpus.tokenizer.clone(),
            corpus_dir,
            model,
            vs,
        })
    }

    /// The model's tensors by their dctk names (`wte`, `h.0.attn.qkv`, …), sorted.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let vars: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        vars.into_iter().collect()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids)?)
    }

    /// Completes every request, batched (prompts may differ in length).
    pub fn generate(&self, requests: &[GenRequest]) -> Result<Vec<Completion>> {
        self.generate_with(requests, DecodeOptions::default(), &mut |_| Flow::Continue)
    }

    /// [`LoadedModel::generate`] calling `on_token` for each token as it is produced.
    pub fn generate_with(&self, requests: &[GenRequest], opts: DecodeOptions, on_token: &mut dyn FnMut(&TokenEvent) -> Flow) -> Result<Vec<Completion>> {
        super::decode::generate(&self.context(), requests, opts, on_token)
    }

    /// Teacher-forced scoring: the natural log-probability of each token of
    /// `continuation` given `prompt` and the continuation tokens before it. `prompt` may be
    /// empty (the first token is then scored after an end-of-text token, as documents
    /// start in training).
    pub fn score(&self, prompt: &[u32], continuation: &[u32]) -> Result<Vec<f32>> {
        Ok(self.score_batch(&[(prompt.to_vec(), continuation.to_vec())])?.remove(0))
    }

    /// [`LoadedModel::score`] of many (prompt, continuation) pairs in batches.
    pub fn score_batch(&self, items: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
        super::decode::score(&self.context(), items)
    }

    /// Checks a request against this model (context length, token ids, settings); the
    /// message names the field.
    pub fn check_request(&self, request: &GenRequest) -> Result<(), String> {
        super::decode::check_request(&self.context(), request)
    }

    /// Logits [T, vocab] of a token sequence (causal, no dropout), as fp32 on the host:
    /// what an exported model must reproduce.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let idx = Tensor::from_slice(&ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()).view([1, -1]).to(self.device);
        let logits = tch::no_grad(|| self.model.forward(&idx, false)).to_kind(Kind::Float).to(Device::Cpu).squeeze_dim(0);
        let (t, v) = logits.size2()?;
        let mut flat = vec![0f32; (t * v) as usize];
        logits.contiguous().copy_data(&mut flat, (t * v) as usize);
        Ok(flat.chunks(v as usize).map(<[f32]>::to_vec).collect())
    }

    fn context(&self) -> super::decode::DecodeContext<'_> {
        super::decode::DecodeContext { model: &self.model, tokenizer: &self.tokenizer, eot_id: self.eot_id, base_vocab: self.vocab.text_ids(), device: self.device }
    }
}

/// Teacher-forced scoring for augmenters (the BoLT E-step's log p and log q; Ruan et al. 2025,
/// arXiv 2503.18866, §3 "bootstrapping latent thoughts"; release ryoungj/BoLT
/// `apps/main/latent_bootstrap.py`): Σ log p(continuation | context) in nats, both texts
/// encoded with the run's tokenizer (special tokens as single ids). A pair longer than the
/// model's context loses context tokens from the left, as the release truncates the prefix;
/// a continuation that alone does not fit is an error naming the item.
impl super::augment::Scorer for LoadedModel {
    fn score(&self, items: &[(String, String)]) -> Result<Vec<f64>> {
        let ctx = usize::try_from(self.config.max_seq_len).unwrap_or(usize::MAX);
        let ids: Vec<(Vec<u32>, Vec<u32>)> = items
            .iter()
            .enumerate()
            .map(|(i, (context, continuation))| {
                let mut c = self.tokenizer.try_encode(context).with_context(|| format!("scoring item {i}: encoding its context"))?;
                let x = self.tokenizer.try_encode(continuation).with_context(|| format!("scoring item {i}: encoding its continuation"))?;
                // An empty context is scored after one end-of-text token.
                if x.len() + 1 > ctx {
                    bail!("scoring item {i}: the continuation alone is {} tokens, more than the model's context of {ctx} tokens allows", x.len());
                }
                if c.len() + x.len() > ctx {
                    c.drain(..c.len() + x.len() - ctx);
                }
                Ok((c, x))
            })
            .collect::<Result<_>>()?;
        let scores = self.score_batch(&ids)?;
        Ok(scores.iter().map(|lp| lp.iter().map(|&v| f64::from(v)).sum()).collect())
    }
}
