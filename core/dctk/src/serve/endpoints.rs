//! The handlers of `dctk serve` and the shapes of what they answer: OpenAI's
//! `text_completion` and `chat.completion` objects, and their streamed chunks
//! (`data: {chunk}\n\n` … `data: [DONE]\n\n`, server-sent events).
//!
//! A completion request becomes one [`Job`] of entries (prompt i, choice j at index
//! `i·n + j`, seeded `seed + j`), handed to the model worker; its events are gathered into
//! one response, or turned into chunks as they come. Dropping the response (the client went
//! away) drops the event receiver, which the worker sees and cancels those entries.
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Method, Uri};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{self, ApiError, PromptInput, SamplingFields};
use super::batcher::{Entry, Event, Job};
use super::AppState;
use crate::generate::chat;
use crate::generate::{Completion, SamplingParams};

type Shared = State<Arc<AppState>>;

pub async fn health(State(st): Shared) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": st.info.run_id,
        "step": st.info.step,
        "weights_blake3": st.info.weights_blake3,
        "device": st.info.device,
        "requests_served": st.requests_served.load(Ordering::Relaxed),
        "batches_run": st.stats.batches_run.load(Ordering::Relaxed),
        "entries_decoded": st.stats.entries_decoded.load(Ordering::Relaxed),
        "entries_cancelled": st.stats.entries_cancelled.load(Ordering::Relaxed),
        "largest_batch": st.stats.largest_batch.load(Ordering::Relaxed),
        "max_batch": st.max_batch,
    }))
}

fn model_card(st: &AppState) -> Value {
    json!({
        "id": st.info.run_id,
        "object": "model",
        "created": st.created_unix_s,
        "owned_by": "dctk",
        "max_model_len": st.info.max_seq_len,
        "root": st.info.run_id,
        "weights_blake3": st.info.weights_blake3,
    })
}

pub async fn models(State(st): Shared) -> Json<Value> {
    Json(json!({ "object": "list", "data": [model_card(&st)] }))
}

pub async fn model(State(st): Shared, Path(id): Path<String>) -> Response {
    if st.serves(&id) {
        Json(model_card(&st)).into_response()
    } else {
        ApiError::unknown_model(&id, &st.info.run_id).into_response()
    }
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(method.as_str(), uri.path())
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// The request's `model`, when given, must be the one served. A request without `model` is
/// accepted (there is only one model to mean), unlike vLLM, which requires it.
fn check_model(st: &AppState, model: &Option<String>) -> Result<(), ApiError> {
    match model {
        Some(m) if !st.serves(m) => Err(ApiError::unknown_model(m, &st.info.run_id)),
        _ => Ok(()),
    }
}

/// One prompt, tokenized and checked against the context.
struct Prompt {
    /// The ids as the request gave them (or as its text encodes).
    ids: Vec<u32>,
    /// The prompt as text (for `echo`).
    text: String,
}

fn tokenize(st: &AppState, input: &PromptInput, param: &str) -> Result<Prompt, ApiError> {
    let tok = &st.info.tokenizer;
    let prompt = match input {
        PromptInput::Text(text) => {
            let ids = tok.try_encode(text).map_err(|e| ApiError::invalid(param, format!("{param}: the tokenizer failed on it ({e})")))?;
            Prompt { ids, text: text.clone() }
        }
        PromptInput::Tokens(ids) => {
            if let Some(bad) = ids.iter().find(|&&id| id >= tok.vocab_size()) {
                return Err(ApiError::invalid(param, format!("{param}: token id {bad} is not in the vocabulary (0..{})", tok.vocab_size())));
            }
            let text = tok.decode(ids).map_err(|e| ApiError::invalid(param, format!("{param}: the token ids do not decode ({e})")))?;
            Prompt { ids: ids.clone(), text }
        }
    };
    if prompt.ids.len() > st.info.max_seq_len {
        return Err(ApiError::invalid(
            param,
            format!("{param}: {} tokens is longer than the model's context of {} tokens", prompt.ids.len(), st.info.max_seq_len),
        ));
    }
    Ok(prompt)
}

/// The entries of one prompt: `n` choices, seeded `seed + j`, `max_tokens` capped to what
/// the context leaves (the completion then ends with finish_reason "length").
fn entries_for(st: &AppState, prompt: &Prompt, s: &SamplingFields, stop: &[String], base_seed: u64, score_prompt: bool) -> Vec<Entry> {
    // An empty prompt starts a document, as every training document does: after end-of-text.
    let ids = if prompt.ids.is_empty() { vec![st.info.eot_id] } else { prompt.ids.clone() };
    let room = st.info.max_seq_len.saturating_sub(ids.len());
    (0..s.n)
        .map(|j| Entry {
            prompt: ids.clone(),
            params: SamplingParams {
                max_tokens: s.max_tokens.min(room),
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                stop: stop.to_vec(),
                seed: base_seed.wrapping_add(j as u64),
                ignore_eot: s.ignore_eos,
            },
            score_prompt,
        })
        .collect()
}

fn base_seed(s: &SamplingFields) -> u64 {
    s.seed.unwrap_or_else(rand::random::<u64>)
}

/// Hands a job to the worker; counts it as served.
fn submit(st: &AppState, entries: Vec<Entry>) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (events, rx) = unbounded_channel();
    let jobs = st.job_sender().ok_or_else(ApiError::unavailable)?;
    jobs.send(Job { entries, events }).map_err(|_| ApiError::unavailable())?;
    st.requests_served.fetch_add(1, Ordering::Relaxed);
    Ok(rx)
}

/// What the worker sent for one entry, gathered.
#[derive(Default, Clone)]
struct Gathered {
    prompt_logprobs: Option<Vec<f32>>,
    completion: Option<Completion>,
}

/// Waits for every entry's completion (non-streamed responses).
async fn gather(mut rx: UnboundedReceiver<Event>, entries: usize) -> Result<Vec<Gathered>, ApiError> {
    let mut out = vec![Gathered::default(); entries];
    let mut remaining = entries;
    while remaining > 0 {
        match rx.recv().await {
            Some(Event::PromptLogprobs { entry, logprobs }) => out[entry].prompt_logprobs = Some(logprobs),
            Some(Event::Token { .. }) => {}
            Some(Event::Done { entry, completion }) => {
                if out[entry].completion.replace(completion).is_none() {
                    remaining -= 1;
                }
            }
            Some(Event::Failed(message)) => return Err(ApiError::server(message)),
            None => return Err(ApiError::server("the model worker dropped the request")),
        }
    }
    Ok(out)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn response_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>())
}

fn token_text(st: &AppState, id: u32) -> String {
    st.info.tokenizer.decode(&[id]).unwrap_or_default()
}

/// OpenAI's completion `logprobs` object over tokens and their logprobs (`None` = the
/// first prompt token, which has no logprob). `top_logprobs` holds only the chosen token:
/// the engine reports no alternatives. `text_offset` counts characters from the start of
/// the choice's `text`.
fn completion_logprobs(st: &AppState, tokens: &[(u32, Option<f32>)], start_offset: usize) -> Value {
    let mut offset = start_offset;
    let (mut strs, mut lps, mut tops, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &(id, lp) in tokens {
        let s = token_text(st, id);
        offsets.push(offset);
        offset += s.chars().count();
        lps.push(lp.map(|x| json!(x)).unwrap_or(Value::Null));
        tops.push(lp.map(|x| json!({ s.clone(): x })).unwrap_or(Value::Null));
        strs.push(s);
    }
    json!({ "tokens": strs, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets })
}

/// The (token, logprob) pairs of an echoed prompt: the first token has none.
fn prompt_token_logprobs(prompt: &Prompt, scores: &Option<Vec<f32>>) -> Vec<(u32, Option<f32>)> {
    prompt
        .ids
        .iter()
        .enumerate()
        .map(|(k, &id)| (id, if k == 0 { None } else { scores.as_ref().and_then(|s| s.get(k - 1).copied()) }))
        .collect()
}

fn usage(prompts: &[Prompt], completions: usize) -> Value {
    let prompt_tokens: usize = prompts.iter().map(|p| p.ids.len()).sum();
    json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completions, "total_tokens": prompt_tokens + completions })
}

/// A body that could not be read (too large: axum's 2 MB limit), as the error JSON.
fn body_rejected(e: BytesRejection) -> Response {
    let mut err = ApiError::bad_body(format!("request body: {}", e.body_text()));
    err.status = e.status();
    err.into_response()
}

/// `POST /v1/completions`.
pub async fn completions(State(st): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_rejected(e),
    };
    match completions_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(st: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req = api::completion_request(&api::parse_body(&body)?)?;
    check_model(&st, &req.model)?;
    let many = req.prompts.len() > 1;
    let prompts: Vec<Prompt> = req
        .prompts
        .iter()
        .enumerate()
        .map(|(i, p)| tokenize(&st, p, &if many { format!("prompt[{i}]") } else { "prompt".into() }))
        .collect::<Result<_, _>>()?;
    let seed = base_seed(&req.sampling);
    let score_prompt = req.echo && req.logprobs.is_some();
    let entries: Vec<Entry> = prompts.iter().flat_map(|p| entries_for(&st, p, &req.sampling, &req.sampling.stop, seed, score_prompt)).collect();
    let n = req.sampling.n;
    let rx = submit(&st, entries)?;
    let shape = Shape::Completion { echo: req.echo, logprobs: req.logprobs.is_some() };
    let id = response_id("cmpl");
    if req.sampling.stream {
        return Ok(stream_response(st, rx, shape, id, prompts, &req.sampling));
    }
    let total = prompts.len() * n;
    let gathered = gather(rx, total).await?;
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for (index, g) in gathered.into_iter().enumerate() {
        let prompt = &prompts[index / n];
        let c = g.completion.expect("gather waits for every completion");
        completion_tokens += c.tokens.len();
        let text = if req.echo { format!("{}{}", prompt.text, c.text) } else { c.text.clone() };
        let logprobs = if req.logprobs.is_some() {
            let mut toks = if req.echo { prompt_token_logprobs(prompt, &g.prompt_logprobs) } else { Vec::new() };
            toks.extend(c.tokens.iter().zip(&c.token_logprobs).map(|(&t, &lp)| (t, Some(lp))));
            completion_logprobs(&st, &toks, 0)
        } else {
            Value::Null
        };
        choices.push(json!({ "index": index, "text": text, "logprobs": logprobs, "finish_reason": c.finish_reason.as_str() }));
    }
    Ok(Json(json!({
        "id": id, "object": "text_completion", "created": unix_now(), "model": st.info.run_id,
        "choices": choices, "usage": usage(&prompts, completion_tokens),
    }))
    .into_response())
}

/// `POST /v1/chat/completions`: the messages rendered with [`chat::render`], the reply
/// stopped at [`chat::CHAT_STOP`] as well as at the request's own stop sequences.
pub async fn chat_completions(State(st): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_rejected(e),
    };
    match chat_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(st: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req = api::chat_request(&api::parse_body(&body)?)?;
    check_model(&st, &req.model)?;
    let prompt = tokenize(&st, &PromptInput::Text(chat::render(&req.messages)), "messages")?;
    let stop = chat::stop_sequences(req.sampling.stop.clone());
    let entries = entries_for(&st, &prompt, &req.sampling, &stop, base_seed(&req.sampling), false);
    let n = req.sampling.n;
    let rx = submit(&st, entries)?;
    let id = response_id("chatcmpl");
    let prompts = vec![prompt];
    if req.sampling.stream {
        return Ok(stream_response(st, rx, Shape::Chat { logprobs: req.logprobs }, id, prompts, &req.sampling));
    }
    let gathered = gather(rx, n).await?;
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for (index, g) in gathered.into_iter().enumerate() {
        let c = g.completion.expect("gather waits for every completion");
        completion_tokens += c.tokens.len();
        let logprobs = if req.logprobs {
            json!({ "content": c.tokens.iter().zip(&c.token_logprobs).map(|(&t, &lp)| chat_token_logprob(&st, t, lp)).collect::<Vec<_>>() })
        } else {
            Value::Null
        };
        choices.push(json!({
            "index": index,
            "message": { "role": "assistant", "content": c.text },
            "logprobs": logprobs,
            "finish_reason": c.finish_reason.as_str(),
        }));
    }
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": unix_now(), "model": st.info.run_id,
        "choices": choices, "usage": usage(&prompts, completion_tokens),
    }))
    .into_response())
}

/// One token of a chat `logprobs.content` list (the chosen token is its only top logprob).
fn chat_token_logprob(st: &AppState, id: u32, logprob: f32) -> Value {
    let s = token_text(st, id);
    let bytes: Vec<u8> = s.as_bytes().to_vec();
    json!({ "token": s, "logprob": logprob, "bytes": bytes, "top_logprobs": [{ "token": s, "logprob": logprob, "bytes": bytes }] })
}

/// Which object a stream's chunks are.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Completion { echo: bool, logprobs: bool },
    Chat { logprobs: bool },
}

/// A stream in progress: what has been sent per choice.
struct StreamState {
    st: Arc<AppState>,
    rx: UnboundedReceiver<Event>,
    shape: Shape,
    id: String,
    created: u64,
    prompts: Vec<Prompt>,
    n: usize,
    /// Generated text sent so far, per choice (without the echoed prompt).
    streamed: Vec<String>,
    /// `text_offset` of the next token, per choice.
    offsets: Vec<usize>,
    echoed: Vec<bool>,
    done: Vec<bool>,
    remaining: usize,
    opened: bool,
    include_usage: bool,
    completion_tokens: usize,
}

const DONE: &str = "[DONE]";

impl StreamState {
    fn completion_chunk(&self, index: usize, text: &str, logprobs: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.st.info.run_id,
            "choices": [{ "index": index, "text": text, "logprobs": logprobs, "finish_reason": finish }],
        })
        .to_string()
    }

    fn chat_chunk(&self, index: usize, delta: Value, logprobs: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.st.info.run_id,
            "choices": [{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish }],
        })
        .to_string()
    }

    /// The chunks sent before any token: a chat reply's role, per choice.
    fn opening(&self) -> Vec<String> {
        match self.shape {
            Shape::Chat { .. } => (0..self.remaining).map(|i| self.chat_chunk(i, json!({ "role": "assistant", "content": "" }), Value::Null, None)).collect(),
            Shape::Completion { .. } => Vec::new(),
        }
    }

    /// The echoed prompt of choice `index`, sent once before its first token.
    fn echo(&mut self, index: usize, scores: &Option<Vec<f32>>, out: &mut Vec<String>) {
        let Shape::Completion { echo: true, logprobs } = self.shape else { return };
        if self.echoed[index] {
            return;
        }
        self.echoed[index] = true;
        let prompt = &self.prompts[index / self.n];
        let lp = if logprobs { completion_logprobs(&self.st, &prompt_token_logprobs(prompt, scores), 0) } else { Value::Null };
        self.offsets[index] = prompt.ids.iter().map(|&t| token_text(&self.st, t).chars().count()).sum();
        out.push(self.completion_chunk(index, &prompt.text, lp, None));
    }

    /// A text delta of choice `index`, with the logprob of the token that made it.
    fn delta(&mut self, index: usize, text: &str, token: Option<(u32, f32)>, out: &mut Vec<String>) {
        self.streamed[index].push_str(text);
        match self.shape {
            Shape::Completion { logprobs, .. } => {
                let lp = match (logprobs, token) {
                    (true, Some((t, x))) => {
                        let v = completion_logprobs(&self.st, &[(t, Some(x))], self.offsets[index]);
                        self.offsets[index] += token_text(&self.st, t).chars().count();
                        v
                    }
                    _ => Value::Null,
                };
                if !text.is_empty() || !lp.is_null() {
                    out.push(self.completion_chunk(index, text, lp, None));
                }
            }
            Shape::Chat { logprobs } => {
                let lp = match (logprobs, token) {
                    (true, Some((t, x))) => json!({ "content": [chat_token_logprob(&self.st, t, x)] }),
                    _ => Value::Null,
                };
                if !text.is_empty() || !lp.is_null() {
                    out.push(self.chat_chunk(index, json!({ "content": text }), lp, None));
                }
            }
        }
    }

    /// The chunks one event makes, and whether the stream ends after them.
    fn on_event(&mut self, event: Option<Event>) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        match event {
            Some(Event::PromptLogprobs { entry, logprobs }) => self.echo(entry, &Some(logprobs), &mut out),
            Some(Event::Token { entry, token, logprob, text_delta }) => {
                self.echo(entry, &None, &mut out);
                self.delta(entry, &text_delta, token.zip(logprob), &mut out);
            }
            Some(Event::Done { entry, completion }) => {
                self.echo(entry, &None, &mut out);
                if self.done[entry] {
                    return (out, false);
                }
                self.done[entry] = true;
                self.completion_tokens += completion.tokens.len();
                // Text the token deltas held back (a stop sequence that did not complete,
                // a character still forming when the completion ended) goes out now, so
                // the deltas always add up to the completion's text.
                if let Some(rest) = completion.text.strip_prefix(self.streamed[entry].as_str()) {
                    if !rest.is_empty() {
                        let rest = rest.to_string();
                        self.delta(entry, &rest, None, &mut out);
                    }
                }
                let finish = Some(completion.finish_reason.as_str());
                out.push(match self.shape {
                    Shape::Completion { .. } => self.completion_chunk(entry, "", Value::Null, finish),
                    Shape::Chat { .. } => self.chat_chunk(entry, json!({}), Value::Null, finish),
                });
                self.remaining -= 1;
                if self.remaining == 0 {
                    if self.include_usage {
                        let object = match self.shape {
                            Shape::Completion { .. } => "text_completion",
                            Shape::Chat { .. } => "chat.completion.chunk",
                        };
                        out.push(
                            json!({
                                "id": self.id, "object": object, "created": self.created, "model": self.st.info.run_id,
                                "choices": [], "usage": usage(&self.prompts, self.completion_tokens),
                            })
                            .to_string(),
                        );
                    }
                    out.push(DONE.to_string());
                    return (out, true);
                }
            }
            Some(Event::Failed(message)) => {
                out.push(ApiError::server(message).body().to_string());
                out.push(DONE.to_string());
                return (out, true);
            }
            None => {
                out.push(ApiError::server("the model worker dropped the request").body().to_string());
                out.push(DONE.to_string());
                return (out, true);
            }
        }
        (out, false)
    }
}

/// Server-sent events: one `data: {chunk}` per delta, `data: [DONE]` at the end. When the
/// client goes away axum drops this stream, and with it the receiver the worker watches.
fn stream_response(st: Arc<AppState>, rx: UnboundedReceiver<Event>, shape: Shape, id: String, prompts: Vec<Prompt>, s: &SamplingFields) -> Response {
    let n = s.n;
    let choices = prompts.len() * n;
    let state = StreamState {
        st,
        rx,
        shape,
        id,
        created: unix_now(),
        prompts,
        n,
        streamed: vec![String::new(); choices],
        offsets: vec![0; choices],
        echoed: vec![false; choices],
        done: vec![false; choices],
        remaining: choices,
        opened: false,
        include_usage: s.include_usage,
        completion_tokens: 0,
    };
    let chunks = futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if !state.opened {
            state.opened = true;
            let opening = state.opening();
            if !opening.is_empty() {
                return Some((opening, Some(state)));
            }
        }
        loop {
            let event = state.rx.recv().await;
            let (chunks, end) = state.on_event(event);
            if end {
                return Some((chunks, None));
            }
            if !chunks.is_empty() {
                return Some((chunks, Some(state)));
            }
        }
    });
    let events = chunks.flat_map(|chunks| futures_util::stream::iter(chunks.into_iter().map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)))));
    Sse::new(events).into_response()
}
