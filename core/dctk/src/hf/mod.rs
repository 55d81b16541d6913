//! Export a run to a Hugging Face model directory (`dctk export-hf`): `config.json`
//! (`LlamaForCausalLM`), `generation_config.json`, `model.safetensors` with Hugging Face tensor
//! names, and the tokenizer files ([`tokenizer`]), so a dctk model loads in `transformers` and
//! the tools built on it (lm-evaluation-harness, vLLM).
//!
//! dctk's network ([`crate::train::model`]) is Llama's (Touvron et al. 2023, "LLaMA: Open and
//! Efficient Foundation Language Models", §2.2): pre-norm RMSNorm, rotary embeddings in the
//! rotate-half form (the pairs (x_i, x_{i+hd/2}), which is also `transformers`' `rotate_half`,
//! so q and k need no permutation), SwiGLU, no biases, untied head, full multi-head attention
//! (as many key/value heads as heads). The tensor map:
//!
//! ```text
//! wte                  → model.embed_tokens.weight
//! h.{i}.attn_norm.weight → model.layers.{i}.input_layernorm.weight
//! h.{i}.attn.qkv  [3d, d] → rows 0..d, d..2d, 2d..3d: self_attn.{q,k,v}_proj.weight
//!                          (the model views them as [3, heads, head_dim], head-major like HF)
//! h.{i}.attn.proj        → self_attn.o_proj.weight
//! h.{i}.mlp_norm.weight  → post_attention_layernorm.weight
//! h.{i}.mlp.gate_up [2f, d] → rows 0..f: mlp.gate_proj.weight, f..2f: mlp.up_proj.weight
//! h.{i}.mlp.down         → mlp.down_proj.weight
//! final_norm.weight      → model.norm.weight
//! lm_head                → lm_head.weight
//! ```
//! The vocabulary is the model's padded rows (`vocab.padded`); the tokenizer knows the first
//! `vocab.base` of them. Weights keep the checkpoint's precision (fp32, or bf16 for bf16 runs).
//! The export is written to a temporary sibling directory and renamed into place, so `--out`
//! holds a whole export or none.
pub mod tokenizer;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::generate::LoadedModel;
use crate::train::checkpoint;

/// What one export wrote.
#[derive(Debug)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub run_id: String,
    pub step: u64,
    /// `float32` or `bfloat16`.
    pub dtype: &'static str,
    pub tensors: usize,
    pub params: i64,
    /// Each file written, with its size in bytes.
    pub files: Vec<(String, u64)>,
}

/// Exports `runs/<id>` (`run_dir`) to the Hugging Face directory `out`. An existing non-empty
/// `out` is refused unless `force`, in which case it is replaced whole.
pub fn export(run_dir: &Path, out: &Path, force: bool) -> Result<ExportSummary> {
    check_out_dir(out, force)?;
    let model = LoadedModel::open(run_dir, Device::Cpu)?;
    let kind = checkpoint_kind(run_dir)?;
    let dtype = match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        other => bail!("{}: checkpoint weights are {other:?}; the export knows fp32 and bf16", run_dir.display()),
    };
    let tensors = hf_tensors(&model, kind)?;
    let params: i64 = tensors.iter().map(|(_, t)| t.numel() as i64).sum();
    let files = [
        ("config.json", serde_json::to_string_pretty(&config_json(&model, dtype))?),
        ("generation_config.json", serde_json::to_string_pretty(&generation_config_json(&model))?),
    ];
    let tok = tokenizer::tokenizer_files(&model.tokenizer, model.eot_id, model.config.max_seq_len)?;
    let tok_files = [
        ("tokenizer.json", tok.tokenizer_json),
        ("tokenizer_config.json", tok.tokenizer_config_json),
        ("special_tokens_map.json", tok.special_tokens_map_json),
    ];

    let tmp = dctk_fs::tmp_sibling(out, "export-hf");
    let written = (|| -> Result<Vec<(String, u64)>> {
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        checkpoint::write_safetensors(&tensors, Some(metadata), &tmp.join("model.safetensors"))?;
        for (name, text) in files.iter().chain(tok_files.iter()) {
            fs::write(tmp.join(name), text).with_context(|| format!("writing {}", tmp.join(name).display()))?;
        }
        let mut written = Vec::new();
        for name in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
            let path = tmp.join(name);
            let file = fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
            written.push((name.to_string(), file.metadata()?.len()));
        }
        dctk_fs::sync_dir(&tmp)?;
        replace_dir(&tmp, out)?;
        Ok(written)
    })();
    let files = match written {
        Ok(files) => files,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    Ok(ExportSummary { out: out.to_path_buf(), run_id: model.run_id.clone(), step: model.step, dtype, tensors: tensors.len(), params, files })
}

/// Refuses an `out` that holds something, unless `force` and it is an earlier export (so a
/// mistyped `--out runs --force` cannot delete a directory of runs); its parent must exist.
fn check_out_dir(out: &Path, force: bool) -> Result<()> {
    if out.is_file() {
        bail!("--out {}: is a file, not a directory", out.display());
    }
    if out.is_dir() {
        let mut entries = fs::read_dir(out).with_context(|| format!("reading --out {}", out.display()))?;
        if entries.next().is_some() {
            if !force {
                bail!("--out {}: exists and is not empty; pass --force to replace it", out.display());
            }
            let config = fs::read_to_string(out.join("config.json")).ok();
            let is_export = config
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|c| c.get("dctk").is_some_and(|d| d.get("run_id").is_some()));
            if !is_export {
                bail!("--out {}: not an earlier dctk export (no config.json with a `dctk` block); refusing to replace it, --force or not", out.display());
            }
        }
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("--out {}: its parent directory {} does not exist", out.display(), parent.display());
    }
    Ok(())
}

/// Moves the finished `tmp` to `out`, replacing what `out` held (an old export moves aside
/// first and is removed only once the new one is in place).
fn replace_dir(tmp: &Path, out: &Path) -> Result<()> {
    let aside = dctk_fs::tmp_sibling(out, "export-hf-old");
    let had_old = out.exists();
    if had_old {
        fs::rename(out, &aside).with_context(|| format!("moving the old {} aside", out.display()))?;
    }
    if let Err(e) = fs::rename(tmp, out) {
        if had_old {
            let _ = fs::rename(&aside, out);
        }
        return Err(e).with_context(|| format!("renaming the export into {}", out.display()));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dctk_fs::sync_dir(parent)?;
    if had_old {
        fs::remove_dir_all(&aside).with_context(|| format!("removing the old export {}", aside.display()))?;
    }
    Ok(())
}

/// The precision the checkpoint's weights were saved in (read from the safetensors header,
/// without reading the weights: `LoadedModel` holds them in fp32 on the CPU).
fn checkpoint_kind(run_dir: &Path) -> Result<Kind> {
    let ckpt = checkpoint::find(run_dir).with_context(|| format!("{}: no checkpoint", run_dir.display()))?;
    let path = ckpt.join("model.safetensors");
    let mut file = fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(|| format!("{}: no safetensors header", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: safetensors header of {len} bytes is not plausible", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header).with_context(|| format!("{}: safetensors header is not JSON", path.display()))?;
    match header.get("wte").and_then(|t| t.get("dtype")).and_then(|d| d.as_str()) {
        Some("F32") => Ok(Kind::Float),
        Some("BF16") => Ok(Kind::BFloat16),
        Some(other) => bail!("{}: tensor `wte` has dtype {other}; the export knows F32 and BF16", path.display()),
        None => bail!("{}: no tensor `wte` in the header", path.display()),
    }
}

/// The model's tensors under Hugging Face Llama names (see the module docs), in `kind`,
/// sorted by name. Every dctk tensor must be mapped: an unknown one is an error, never dropped.
pub fn hf_tensors(model: &LoadedModel, kind: Kind) -> Result<Vec<(String, Tensor)>> {
    let cfg = &model.config;
    let (d, d_ff) = (cfg.d_model, cfg.d_ff);
    let mut dctk: BTreeMap<String, Tensor> = model.named_tensors().into_iter().collect();
    let mut take = |name: &str, shape: &[i64]| -> Result<Tensor> {
        let t = dctk.remove(name).with_context(|| format!("run {}: the model has no tensor `{name}`", model.run_id))?;
        if t.size() != shape {
            bail!("run {}: tensor `{name}` has shape {:?}, expected {shape:?}", model.run_id, t.size());
        }
        Ok(t)
    };
    let mut hf: Vec<(String, Tensor)> = Vec::new();
    hf.push(("model.embed_tokens.weight".into(), take("wte", &[cfg.vocab_size, d])?));
    for i in 0..cfg.n_layer {
        let p = format!("model.layers.{i}");
        hf.push((format!("{p}.input_layernorm.weight"), take(&format!("h.{i}.attn_norm.weight"), &[d])?));
        let qkv = take(&format!("h.{i}.attn.qkv"), &[3 * d, d])?;
        for (j, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            hf.push((format!("{p}.self_attn.{name}.weight"), qkv.narrow(0, j as i64 * d, d)));
        }
        hf.push((format!("{p}.self_attn.o_proj.weight"), take(&format!("h.{i}.attn.proj"), &[d, d])?));
        hf.push((format!("{p}.post_attention_layernorm.weight"), take(&format!("h.{i}.mlp_norm.weight"), &[d])?));
        let gate_up = take(&format!("h.{i}.mlp.gate_up"), &[2 * d_ff, d])?;
        hf.push((format!("{p}.mlp.gate_proj.weight"), gate_up.narrow(0, 0, d_ff)));
        hf.push((format!("{p}.mlp.up_proj.weight"), gate_up.narrow(0, d_ff, d_ff)));
        hf.push((format!("{p}.mlp.down_proj.weight"), take(&format!("h.{i}.mlp.down"), &[d, d_ff])?));
    }
    hf.push(("model.norm.weight".into(), take("final_norm.weight", &[d])?));
    hf.push(("lm_head.weight".into(), take("lm_head", &[cfg.vocab_size, d])?));
    if let Some(name) = dctk.keys().next() {
        bail!("run {}: tensor `{name}` has no Hugging Face Llama counterpart; the export does not know this architecture", model.run_id);
    }
    hf.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(hf.into_iter().map(|(n, t)| (n, t.to_kind(kind).contiguous())).collect())
}

/// `config.json`: a `LlamaForCausalLM` of the run's shape, plus a `dctk` block that says where
/// the weights came from.
pub fn config_json(model: &LoadedModel, dtype: &str) -> serde_json::Value {
    let cfg = &model.config;
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_dim(),
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        // transformers 5 reads `rope_parameters`; 4.x (and vLLM, llama.cpp converters) `rope_theta`.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": { "rope_type": "default", "rope_theta": cfg.rope_theta },
        "rope_scaling": null,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "bos_token_id": model.eot_id,
        "eos_token_id": model.eot_id,
        "use_cache": true,
        // `dtype` is transformers 5's name, `torch_dtype` 4.x's.
        "dtype": dtype,
        "torch_dtype": dtype,
        "dctk": {
            "run_id": model.run_id,
            "step": model.step,
            "weights_blake3": model.weights_blake3,
            "vocab": model.vocab,
            "tokenizer": model.tokenizer_info,
        },
    })
}

/// `generation_config.json`: generation ends at the end-of-text token, which also pads.
pub fn generation_config_json(model: &LoadedModel) -> serde_json::Value {
    json!({
        "bos_token_id": model.eot_id,
        "eos_token_id": model.eot_id,
        "pad_token_id": model.eot_id,
    })
}

/// dctk's own logits of `ids` (one sequence), [ids.len(), vocab_size] row-major in fp32: what
/// the exported model must reproduce on the same ids (tests/export_hf.rs compares them with
/// `transformers`').
pub fn dctk_logits(model: &LoadedModel, ids: &[u32]) -> Result<Vec<f32>> {
    if ids.is_empty() || ids.len() as i64 > model.config.max_seq_len {
        bail!("dctk_logits: {} ids; the model takes 1 to {}", ids.len(), model.config.max_seq_len);
    }
    if let Some(&bad) = ids.iter().find(|&&i| i64::from(i) >= model.config.vocab_size) {
        bail!("dctk_logits: id {bad} is outside the vocabulary of {}", model.config.vocab_size);
    }
    let idx: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let logits = tch::no_grad(|| {
        let input = Tensor::from_slice(&idx).view([1, -1]).to_device(model.device);
        model.model.forward(&input, false).to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1])
    });
    Ok(Vec::<f32>::try_from(&logits)?)
}
