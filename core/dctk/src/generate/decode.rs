//! Batched incremental decoding with the KV cache, and teacher-forced scoring.
//!
//! A batch of prompts of different lengths is **left-padded** to the longest, so every row
//! decodes its next token in the same step; each row carries its own RoPE positions
//! (padding does not shift them) and an attention mask that hides its padding. The prefill
//! runs the padded prompts through [`Gpt::forward_decode`] once, filling the [`KvCache`];
//! each decode step then feeds one token per row and appends one slot. Rows that finish
//! (end-of-text, a stop sequence, `max_tokens`, the context) are dropped from the batch and
//! its cache. Without the cache ([`DecodeOptions::kv_cache`] false) every step recomputes the
//! whole padded prefix under the same positions and mask: the reference the cached path is
//! tested to reproduce token for token, and benchmarked against.
//!
//! Log-probabilities are over the model's whole output (the softmax training's
//! cross-entropy uses), so [`score`] of a text is exactly minus the sum of the training
//! loss's per-token terms; sampling draws only among the tokenizer's ids (never a plugin's
//! extra token such as MIR's MASK, nor a padding row).
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::sampling::{SamplingParams, TokenSampler};
use crate::train::model::KvCache;
use crate::train::Gpt;
use dctk_data::Tokenizer;

/// One prompt (token ids) and how to continue it.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End-of-text or a stop sequence.
    Stop,
    /// `max_tokens`, or the model's context (`max_seq_len`) is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A finished completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The generated tokens (a final end-of-text token is not included; tokens of a stop
    /// sequence are).
    pub tokens: Vec<u32>,
    /// The generated text, cut before the stop sequence that ended it.
    pub text: String,
    /// Natural log-probability of each generated token under the model's distribution
    /// (temperature 1, no truncation), as OpenAI's `logprobs` reports.
    pub token_logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// What decoding reports as it goes (for streaming): a chosen token, and once per request
/// the end, with the text that was still held back.
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    /// Index of the request in the batch.
    pub request: usize,
    /// The token chosen (None for an end without a new token: end-of-text, or nothing to
    /// generate).
    pub token: Option<u32>,
    /// Its natural log-probability under the model.
    pub logprob: Option<f32>,
    /// New text to show (empty while a stop sequence or a multi-byte character may still be
    /// forming).
    pub text_delta: &'a str,
    /// Set on the request's last event.
    pub finish: Option<FinishReason>,
}

/// What a streaming callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop this request (its client went away); the others go on.
    Cancel,
}

/// How to decode (not what: that is [`SamplingParams`]).
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Use the KV cache (true) or recompute the whole prefix each step (false: the
    /// reference the cache is tested and benchmarked against).
    pub kv_cache: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { kv_cache: true }
    }
}

/// What decoding needs besides the model: the tokenizer (for stop sequences and text), the
/// end-of-text id and how many ids are the tokenizer's (the ones that may be sampled: its
/// vocabulary and the corpus's special tokens, `VocabLayout::text_ids`; never a plugin's ids
/// or padding).
pub struct DecodeContext<'a> {
    pub model: &'a Gpt,
    pub tokenizer: &'a Tokenizer,
    pub eot_id: u32,
    pub base_vocab: i64,
    pub device: Device,
}

/// A row of the batch being decoded.
struct Row {
    request: usize,
    /// Left padding of the prompt in the batch.
    pad: i64,
    prompt_len: i64,
    max_new: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    sampler: TokenSampler,
    /// Bytes of `text` already reported to the streaming callback.
    emitted: usize,
    text: String,
    finish: Option<FinishReason>,
}

/// Checks a request against the model; the message names the field.
pub fn check_request(ctx: &DecodeContext, r: &GenRequest) -> Result<(), String> {
    r.params.validate()?;
    let ctx_len = ctx.model.config.max_seq_len;
    let n = r.prompt.len().max(1) as i64;
    if n >= ctx_len {
        return Err(format!("prompt: {n} tokens leave no room to generate in the model's context of {ctx_len} tokens"));
    }
    if let Some(&bad) = r.prompt.iter().find(|&&t| i64::from(t) >= ctx.model.config.vocab_size) {
        return Err(format!("prompt: token id {bad} is not in the model's vocabulary ({} ids)", ctx.model.config.vocab_size));
    }
    Ok(())
}

/// The prompt as decoded: an empty prompt starts after an end-of-text token, as every
/// document does in training.
fn prompt_ids(ctx: &DecodeContext, r: &GenRequest) -> Vec<u32> {
    if r.prompt.is_empty() {
        vec![ctx.eot_id]
    } else {
        r.prompt.clone()
    }
}

/// Decodes every request (see the module doc), calling `on_token` as each token is chosen.
pub fn generate(ctx: &DecodeContext, requests: &[GenRequest], opts: DecodeOptions, on_token: &mut dyn FnMut(&TokenEvent) -> Flow) -> Result<Vec<Completion>> {
    for (i, r) in requests.iter().enumerate() {
        if let Err(e) = check_request(ctx, r) {
            bail!("request {i}: {e}");
        }
    }
    let mut done: Vec<Option<Completion>> = vec![None; requests.len()];
    tch::no_grad(|| decode_batch(ctx, requests, opts, on_token, &mut done))?;
    Ok(done.into_iter().map(|c| c.expect("every row finishes")).collect())
}

fn decode_batch(ctx: &DecodeContext, requests: &[GenRequest], opts: DecodeOptions, on_token: &mut dyn FnMut(&TokenEvent) -> Flow, done: &mut [Option<Completion>]) -> Result<()> {
    let cfg = &ctx.model.config;
    let prompts: Vec<Vec<u32>> = requests.iter().map(|r| prompt_ids(ctx, r)).collect();
    let width = prompts.iter().map(|p| p.len() as i64).max().unwrap_or(1);
    let mut rows: Vec<Row> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let prompt_len = prompts[i].len() as i64;
        let max_new = r.params.max_tokens.min((cfg.max_seq_len - prompt_len) as usize);
        let row = Row {
            request: i,
            pad: width - prompt_len,
            prompt_len,
            max_new,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            sampler: TokenSampler::new(r.params.seed),
            emitted: 0,
            text: String::new(),
            finish: None,
        };
        if max_new == 0 {
            on_token(&TokenEvent { request: i, token: None, logprob: None, text_delta: "", finish: Some(FinishReason::Length) });
            done[i] = Some(finish_row(row, FinishReason::Length));
        } else {
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let longest_new = rows.iter().map(|r| r.max_new as i64).max().unwrap_or(0);
    let capacity = width + longest_new;
    let dev = ctx.device;
    // The padded prompts, their positions, and which key slots are real (not padding).
    let mut ids: Vec<i64> = Vec::with_capacity(rows.len() * width as usize);
    let mut pos: Vec<i64> = Vec::with_capacity(ids.capacity());
    for row in &rows {
        let p = &prompts[row.request];
        for t in 0..width {
            let real = t - row.pad;
            ids.push(if real >= 0 { i64::from(p[real as usize]) } else { 0 });
            pos.push(real.max(0));
        }
    }
    let b = rows.len() as i64;
    let prompt_ids = Tensor::from_slice(&ids).view([b, width]).to(dev);
    let prompt_pos = Tensor::from_slice(&pos).view([b, width]).to(dev);
    let pads = Tensor::from_slice(&rows.iter().map(|r| r.pad).collect::<Vec<_>>()).to(dev);
    // valid[b, j]: key slot j holds a real token of row b (the prompt after its padding,
    // then every generated token).
    let mut valid = Tensor::arange(capacity, (Kind::Int64, dev)).unsqueeze(0).ge_tensor(&pads.unsqueeze(1));
    let kind = ctx.model_kind();
    let mut cache = if opts.kv_cache { Some(KvCache::new(cfg, b, capacity, kind, dev)) } else { None };
    // Every position generated so far, for the no-cache reference path.
    let mut all_ids = prompt_ids.shallow_clone();
    let mut all_pos = prompt_pos.shallow_clone();

    let mut logits = {
        let mask = prefill_mask(&valid.narrow(1, 0, width), width);
        ctx.model.forward_decode(&prompt_ids, &prompt_pos, &mask, cache.as_mut(), true)
    };
    let mut filled = width;
    loop {
        // Log-probabilities of the next token of every live row. When every row decodes
        // greedily, the choice is made on the device and only (token, log-probability)
        // pairs cross to the host; otherwise the rows' distributions come over whole.
        let lp = logits.squeeze_dim(1).to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let all_greedy = rows.iter().all(|r| requests[r.request].params.is_greedy());
        let (host, v, greedy_picks) = if all_greedy {
            let top = lp.narrow(1, 0, ctx.base_vocab.min(lp.size()[1])).argmax(-1, false);
            let top_lp = lp.gather(1, &top.unsqueeze(1), false).squeeze_dim(1).to(Device::Cpu);
            let top = Vec::<i64>::try_from(top.to(Device::Cpu))?;
            let top_lp = Vec::<f32>::try_from(top_lp)?;
            (Vec::new(), 0, Some((top, top_lp)))
        } else {
            let lp = lp.to(Device::Cpu).contiguous();
            let v = lp.size()[1] as usize;
            let mut host = vec![0f32; rows.len() * v];
            lp.copy_data(&mut host, rows.len() * v);
            (host, v, None)
        };
        let mut next = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter_mut().enumerate() {
            let params = &requests[row.request].params;
            let (token, logprob) = match &greedy_picks {
                Some((top, top_lp)) => (top[i] as u32, top_lp[i]),
                None => {
                    let row_lp = &host[i * v..(i + 1) * v];
                    let token = row.sampler.choose(&row_lp[..(ctx.base_vocab as usize).min(v)], params);
                    (token, row_lp[token as usize])
                }
            };
            next.push(i64::from(token));
            if token == ctx.eot_id && !params.ignore_eot {
                row.finish = Some(FinishReason::Stop);
                let delta = row.text[row.emitted..].to_string();
                row.emitted = row.text.len();
                on_token(&TokenEvent { request: row.request, token: None, logprob: None, text_delta: &delta, finish: row.finish });
                continue;
            }
            row.tokens.push(token);
            row.logprobs.push(logprob);
            let full = ctx.tokenizer.decode(&row.tokens)?;
            let (text, safe_end, stopped) = stop_scan(&full, &params.stop, row.emitted);
            row.text = text;
            if stopped {
                row.finish = Some(FinishReason::Stop);
            } else if row.tokens.len() >= row.max_new {
                row.finish = Some(FinishReason::Length);
            }
            let end = if row.finish.is_some() { row.text.len() } else { safe_end };
            let delta = row.text[row.emitted..end].to_string();
            row.emitted = end;
            let event = TokenEvent { request: row.request, token: Some(token), logprob: Some(logprob), text_delta: &delta, finish: row.finish };
            if on_token(&event) == Flow::Cancel {
                row.finish = Some(FinishReason::Stop);
            }
        }
        // Report what finished, with the rest of its text; keep the live rows.
        let mut keep = Vec::new();
        let mut kept = Vec::new();
        for (i, row) in std::mem::take(&mut rows).into_iter().enumerate() {
            match row.finish {
                Some(reason) => {
                    let request = row.request;
                    done[request] = Some(finish_row(row, reason));
                }
                None => {
                    keep.push(i as i64);
                    kept.push(next[i]);
                    rows.push(row);
                }
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let b = rows.len() as i64;
        let next_ids = Tensor::from_slice(&kept).view([b, 1]).to(dev);
        let next_pos = Tensor::from_slice(&rows.iter().map(|r| r.prompt_len + r.tokens.len() as i64 - 1).collect::<Vec<_>>()).view([b, 1]).to(dev);
        if keep.len() < next.len() {
            let idx = Tensor::from_slice(&keep).to(dev);
            valid = valid.index_select(0, &idx);
            if let Some(c) = cache.as_mut() {
                c.keep_rows(&idx);
            }
            all_ids = all_ids.index_select(0, &idx);
            all_pos = all_pos.index_select(0, &idx);
        }
        logits = match cache.as_mut() {
            Some(c) => {
                let mask = valid.narrow(1, 0, filled + 1).view([b, 1, 1, filled + 1]);
                ctx.model.forward_decode(&next_ids, &next_pos, &mask, Some(c), true)
            }
            None => {
                all_ids = Tensor::cat(&[&all_ids, &next_ids], 1);
                all_pos = Tensor::cat(&[&all_pos, &next_pos], 1);
                let mask = prefill_mask(&valid.narrow(1, 0, filled + 1), filled + 1);
                ctx.model.forward_decode(&all_ids, &all_pos, &mask, None, true)
            }
        };
        filled += 1;
    }
}

/// The attention mask [B, 1, T, T] of T positions whose key slots are `valid` [B, T]:
/// causal and real, plus each position's own slot (a padding query must attend to
/// something, or its softmax is 0/0 and NaN would reach real rows through the values).
fn prefill_mask(valid: &Tensor, t: i64) -> Tensor {
    let dev = valid.device();
    let causal = Tensor::ones([t, t], (Kind::Bool, dev)).tril(0);
    let eye = Tensor::eye(t, (Kind::Bool, dev));
    causal.unsqueeze(0).logical_and(&valid.unsqueeze(1)).logical_or(&eye.unsqueeze(0)).unsqueeze(1)
}

fn finish_row(row: Row, reason: FinishReason) -> Completion {
    Completion { tokens: row.tokens, text: row.text, token_logprobs: row.logprobs, finish_reason: reason }
}

/// Scans the decoded text for stop sequences. Returns (the text, cut before the first stop
/// sequence if there is one; the end of the part that is safe to show now; whether a stop
/// sequence was found). Held back: a trailing replacement character (a multi-byte
/// character still forming) and a suffix that could begin a stop sequence.
fn stop_scan(full: &str, stops: &[String], emitted: usize) -> (String, usize, bool) {
    // A stop sequence can only start where nothing was shown yet, minus its length.
    let longest = stops.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut from = emitted.saturating_sub(longest);
    while !full.is_char_boundary(from) {
        from -= 1;
    }
    let first = stops.iter().filter_map(|s| full[from..].find(s.as_str()).map(|i| from + i)).min();
    if let Some(cut) = first {
        return (full[..cut].to_string(), cut.max(emitted), true);
    }
    let mut safe = full.trim_end_matches('\u{FFFD}').len();
    // The longest proper prefix of a stop sequence that the shown text would end with.
    let held = stops
        .iter()
        .flat_map(|s| s.char_indices().skip(1).map(move |(k, _)| &s[..k]))
        .filter(|p| full[..safe].ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0);
    safe -= held;
    (full.to_string(), safe.max(emitted), false)
}

impl DecodeContext<'_> {
    fn model_kind(&self) -> Kind {
        self.model.kind()
    }
}

/// Teacher-forced scores of each (prompt, continuation): the natural log-probability of each
/// continuation token given everything before it (an empty prompt means "after an
/// end-of-text token"), batched by right-padding (causal attention: padding after a row's
/// end changes none of its positions).
pub fn score(ctx: &DecodeContext, items: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
    let cfg = &ctx.model.config;
    let mut seqs = Vec::with_capacity(items.len());
    for (i, (prompt, cont)) in items.iter().enumerate() {
        let mut ids: Vec<u32> = if prompt.is_empty() { vec![ctx.eot_id] } else { prompt.clone() };
        let prompt_len = ids.len();
        ids.extend(cont);
        if ids.len() as i64 > cfg.max_seq_len {
            bail!("item {i}: prompt + continuation are {} tokens, longer than the model's context of {} tokens", ids.len(), cfg.max_seq_len);
        }
        if let Some(&bad) = ids.iter().find(|&&t| i64::from(t) >= cfg.vocab_size) {
            bail!("item {i}: token id {bad} is not in the model's vocabulary ({} ids)", cfg.vocab_size);
        }
        seqs.push((ids, prompt_len));
    }
    let mut out = Vec::with_capacity(items.len());
    // Batches of similar total size keep padding small; 32 rows at a time bounds memory.
    for chunk in seqs.chunks(32) {
        let width = chunk.iter().map(|(s, _)| s.len()).max().unwrap_or(1) as i64;
        let b = chunk.len() as i64;
        let mut flat = Vec::with_capacity((b * width) as usize);
        for (s, _) in chunk {
            flat.extend(s.iter().map(|&t| i64::from(t)));
            flat.extend(std::iter::repeat_n(0i64, width as usize - s.len()));
        }
        let idx = Tensor::from_slice(&flat).view([b, width]).to(ctx.device);
        // Hidden states only; the head runs chunked over the scored positions alone, so no
        // [rows, width, vocab] log-softmax is ever held.
        let hidden = tch::no_grad(|| ctx.model.forward_hidden(&idx, None, false));
        for (row, (s, prompt_len)) in chunk.iter().enumerate() {
            let n = s.len() - prompt_len;
            if n == 0 {
                out.push(Vec::new());
                continue;
            }
            // The logits at position p predict token p + 1.
            let targets = Tensor::from_slice(&s[*prompt_len..].iter().map(|&t| i64::from(t)).collect::<Vec<_>>()).to(ctx.device);
            let rows = hidden.get(row as i64).narrow(0, *prompt_len as i64 - 1, n as i64);
            let picked = ctx.model.target_log_probs(&rows, &targets).to(Device::Cpu);
            let mut v = vec![0f32; n];
            picked.copy_data(&mut v, n);
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::stop_scan;

    #[test]
    fn stop_sequences_cut_and_hold_back() {
        let stops = vec!["\n\nUser:".to_string()];
        // Found: cut before it.
        let (t, end, stop) = stop_scan("Hi there\n\nUser: x", &stops, 0);
        assert_eq!((t.as_str(), end, stop), ("Hi there", 8, true));
        // A suffix that may begin the stop sequence is held back.
        let (t, end, stop) = stop_scan("Hi there\n", &stops, 0);
        assert_eq!((t.as_str(), end, stop), ("Hi there\n", 8, false));
        // A character still forming is held back.
        let (_, end, _) = stop_scan("ab\u{FFFD}", &[], 0);
        assert_eq!(end, 2);
        // Nothing to hold: everything is safe.
        let (_, end, _) = stop_scan("abc", &stops, 1);
        assert_eq!(end, 3);
    }
}
