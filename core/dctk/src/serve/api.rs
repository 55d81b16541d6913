//! The OpenAI HTTP API as `dctk serve` speaks it: the error JSON, and the parsing and
//! checking of `POST /v1/completions` and `POST /v1/chat/completions` bodies into plain
//! requests. Every bad field is a 400 whose `param` names it, in OpenAI's shape
//! `{"error": {"message", "type": "invalid_request_error", "param", "code"}}`.
//!
//! The parser reads the body as a JSON object field by field (not with a derived
//! deserializer) so each error can name its field and say what was expected. Fields this
//! server does not know are ignored, as OpenAI-compatible servers do, except those that would
//! change the result and are not implemented (penalties, `logit_bias`, `best_of`, `suffix`):
//! those are refused rather than silently ignored.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::generate::chat::{role_label, ChatMessage};

/// The most choices one request may ask for (`n`, times the number of prompts).
pub const MAX_CHOICES: usize = 128;
/// The most top-logprobs a request may ask for (OpenAI's limit for completions).
pub const MAX_LOGPROBS: usize = 20;

/// An error answered as OpenAI's error JSON.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: a field of the request is wrong.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", param: Some(param.to_string()), code: None }
    }

    /// 400 about the request as a whole (its body).
    pub fn bad_body(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", param: None, code: None }
    }

    /// 404: the request names a model this server does not serve.
    pub fn unknown_model(asked: &str, served: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("model: \"{asked}\" does not exist; this server serves \"{served}\""),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 404: no such route.
    pub fn not_found(method: &str, path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("{method} {path}: no such endpoint (this server has GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions)"),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{method} {path}: method not allowed"),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// 500: decoding failed (the message says why).
    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into(), kind: "server_error", param: None, code: None }
    }

    /// 503: the model worker has stopped (the server is shutting down).
    pub fn unavailable() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the model worker is not running (the server is shutting down)".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The error JSON (also sent as the last event of a failed stream).
    pub fn body(&self) -> Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// One prompt as the request gave it.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// The sampling fields both endpoints share.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingFields {
    /// As asked (capped to the context later, per prompt).
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off (`-1`, vLLM's "off", is read as 0).
    pub top_k: usize,
    pub stop: Vec<String>,
    /// Choices per prompt.
    pub n: usize,
    /// Choice j of a prompt is sampled with seed + j; `None`: a fresh random seed.
    pub seed: Option<u64>,
    /// vLLM's `ignore_eos`: go on past end-of-text.
    pub ignore_eos: bool,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk (before `[DONE]`) with the usage.
    pub include_usage: bool,
}

/// A parsed `POST /v1/completions` body.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompts: Vec<PromptInput>,
    pub sampling: SamplingFields,
    /// Top-logprobs count asked for; `Some(_)` turns log-probabilities on.
    pub logprobs: Option<usize>,
    pub echo: bool,
}

/// A parsed `POST /v1/chat/completions` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub sampling: SamplingFields,
    pub logprobs: bool,
}

/// The body as a JSON object, or the 400 that names the body.
pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::bad_body(format!("request body: not valid JSON ({e})")))?;
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_body(format!("request body: expected a JSON object, got {}", type_name(&other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field access with errors that name the field. `null` reads as absent (OpenAI clients
/// send `"stop": null` and the like).
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn uint(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let n = as_integer(v).ok_or_else(|| ApiError::invalid(key, format!("{key}: expected an integer, got {}", shown(v))))?;
        if n < min as i128 || n > max as i128 {
            return Err(ApiError::invalid(key, format!("{key}: {n} is out of range (must be in {min}..={max})")));
        }
        Ok(Some(n as u64))
    }

    /// A number in `[lo, hi]` (or `(lo, hi]` when `lo_open`).
    fn number(&self, key: &str, lo: f64, hi: f64, lo_open: bool) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let x = v.as_f64().ok_or_else(|| ApiError::invalid(key, format!("{key}: expected a number, got {}", shown(v))))?;
        let below = if lo_open { x <= lo } else { x < lo };
        if !x.is_finite() || below || x > hi {
            let range = if lo_open { format!("({lo}, {hi}]") } else { format!("[{lo}, {hi}]") };
            return Err(ApiError::invalid(key, format!("{key}: {x} is out of range (must be in {range})")));
        }
        Ok(Some(x))
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        v.as_bool().map(Some).ok_or_else(|| ApiError::invalid(key, format!("{key}: expected true or false, got {}", shown(v))))
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        v.as_str().map(Some).ok_or_else(|| ApiError::invalid(key, format!("{key}: expected a string, got {}", shown(v))))
    }
}

fn as_integer(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return Some(i as i128);
    }
    if let Some(u) = v.as_u64() {
        return Some(u as i128);
    }
    // 3.0 is an integer; 3.5 is not.
    v.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15).map(|x| x as i128)
}

/// A value as shown in an error message (short).
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{} ({}…)", type_name(v), s.chars().take(30).collect::<String>())
    } else {
        s
    }
}

/// The fields that would change the result but are not implemented: refused when set to
/// anything but their no-op value.
fn refuse_unsupported(f: &Fields) -> Result<(), ApiError> {
    for key in ["presence_penalty", "frequency_penalty", "repetition_penalty"] {
        if let Some(v) = f.get(key) {
            let noop = if key == "repetition_penalty" { 1.0 } else { 0.0 };
            if v.as_f64() != Some(noop) {
                return Err(ApiError::invalid(key, format!("{key}: not supported by dctk serve (only {noop} is accepted)")));
            }
        }
    }
    if let Some(v) = f.get("logit_bias") {
        if v.as_object().is_none_or(|m| !m.is_empty()) {
            return Err(ApiError::invalid("logit_bias", "logit_bias: not supported by dctk serve"));
        }
    }
    if let Some(v) = f.get("suffix") {
        if v.as_str() != Some("") {
            return Err(ApiError::invalid("suffix", "suffix: not supported by dctk serve (insertion is not implemented)"));
        }
    }
    if let Some(v) = f.get("tools") {
        if v.as_array().is_none_or(|a| !a.is_empty()) {
            return Err(ApiError::invalid("tools", "tools: not supported by dctk serve (base models do not call tools)"));
        }
    }
    Ok(())
}

fn sampling_fields(f: &Fields, max_tokens_keys: &[&str]) -> Result<SamplingFields, ApiError> {
    refuse_unsupported(f)?;
    let mut max_tokens = None;
    for key in max_tokens_keys {
        if let Some(m) = f.uint(key, 0, u32::MAX as u64)? {
            max_tokens = Some(m as usize);
        }
    }
    let n = f.uint("n", 1, MAX_CHOICES as u64)?.unwrap_or(1) as usize;
    if let Some(best_of) = f.uint("best_of", 1, MAX_CHOICES as u64)? {
        if best_of as usize != n {
            return Err(ApiError::invalid("best_of", "best_of: not supported by dctk serve (only best_of = n is accepted)"));
        }
    }
    let top_k = match f.get("top_k") {
        None => 0,
        Some(v) => match as_integer(v) {
            Some(-1) => 0,
            Some(k) if (0..=u32::MAX as i128).contains(&k) => k as usize,
            _ => return Err(ApiError::invalid("top_k", format!("top_k: expected an integer ≥ 0 (or -1 for off), got {}", shown(v)))),
        },
    };
    let seed = match f.get("seed") {
        None => None,
        // Negative seeds are accepted (vLLM does) and read as their two's-complement bits.
        Some(v) => Some(match as_integer(v) {
            Some(s) if s >= 0 && s <= u64::MAX as i128 => s as u64,
            Some(s) if s < 0 && s >= i64::MIN as i128 => s as i64 as u64,
            _ => return Err(ApiError::invalid("seed", format!("seed: expected an integer, got {}", shown(v)))),
        }),
    };
    Ok(SamplingFields {
        max_tokens: max_tokens.unwrap_or(16),
        temperature: f.number("temperature", 0.0, 2.0, false)?.unwrap_or(1.0),
        top_p: f.number("top_p", 0.0, 1.0, true)?.unwrap_or(1.0),
        top_k,
        stop: stop_field(f)?,
        n,
        seed,
        ignore_eos: f.boolean("ignore_eos")?.unwrap_or(false),
        stream: f.boolean("stream")?.unwrap_or(false),
        include_usage: include_usage_field(f)?,
    })
}

fn include_usage_field(f: &Fields) -> Result<bool, ApiError> {
    match f.get("stream_options") {
        None => Ok(false),
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(ApiError::invalid("stream_options", format!("stream_options: include_usage must be true or false, got {}", shown(v)))),
        },
        Some(v) => Err(ApiError::invalid("stream_options", format!("stream_options: expected an object, got {}", shown(v)))),
    }
}

fn stop_field(f: &Fields) -> Result<Vec<String>, ApiError> {
    let bad = |v: &Value| ApiError::invalid("stop", format!("stop: expected a string or a list of strings, got {}", shown(v)));
    let stops = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().map(|s| s.as_str().map(str::to_string).ok_or_else(|| bad(s))).collect::<Result<_, _>>()?,
        Some(v) => return Err(bad(v)),
    };
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop: a stop sequence may not be empty"));
    }
    Ok(stops)
}

fn model_field(f: &Fields) -> Result<Option<String>, ApiError> {
    Ok(f.string("model")?.map(str::to_string))
}

/// Parses a `POST /v1/completions` body.
pub fn completion_request(body: &Map<String, Value>) -> Result<CompletionRequest, ApiError> {
    let f = Fields(body);
    let model = model_field(&f)?;
    let prompts = prompt_field(&f)?;
    let sampling = sampling_fields(&f, &["max_tokens"])?;
    let logprobs = match f.get("logprobs") {
        // Chat-style `logprobs: true` is read as "the chosen token only".
        Some(Value::Bool(b)) => b.then_some(0),
        _ => f.uint("logprobs", 0, MAX_LOGPROBS as u64)?.map(|n| n as usize),
    };
    let echo = f.boolean("echo")?.unwrap_or(false);
    f.string("user")?;
    if prompts.len() * sampling.n > MAX_CHOICES {
        return Err(ApiError::invalid("n", format!("n: {} prompts × n = {} is more than the {MAX_CHOICES} choices a request may ask for", prompts.len(), sampling.n)));
    }
    Ok(CompletionRequest { model, prompts, sampling, logprobs, echo })
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of lists of ids.
fn prompt_field(f: &Fields) -> Result<Vec<PromptInput>, ApiError> {
    let bad = |what: String| ApiError::invalid("prompt", format!("prompt: {what}"));
    let Some(v) = f.get("prompt") else {
        return Err(bad("missing (a string, a list of strings, a list of token ids or a list of lists of token ids)".into()));
    };
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|t| as_integer(t).filter(|&i| (0..=u32::MAX as i128).contains(&i)).map(|i| i as u32).ok_or_else(|| bad(format!("expected token ids (integers ≥ 0), got {}", shown(t)))))
            .collect()
    };
    match v {
        Value::String(s) => Ok(vec![PromptInput::Text(s.clone())]),
        Value::Array(items) if items.is_empty() => Err(bad("an empty list".into())),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|s| s.as_str().map(|s| PromptInput::Text(s.to_string())).ok_or_else(|| bad(format!("a list of strings holds {}", shown(s)))))
                .collect(),
            Value::Number(_) => Ok(vec![PromptInput::Tokens(ids(items)?)]),
            Value::Array(_) => items
                .iter()
                .map(|p| match p {
                    Value::Array(inner) if !inner.is_empty() => Ok(PromptInput::Tokens(ids(inner)?)),
                    other => Err(bad(format!("a list of token-id lists holds {}", shown(other)))),
                })
                .collect(),
            other => Err(bad(format!("a list holding {}", shown(other)))),
        },
        other => Err(bad(format!("expected a string or a list, got {}", shown(other)))),
    }
}

/// Parses a `POST /v1/chat/completions` body.
pub fn chat_request(body: &Map<String, Value>) -> Result<ChatRequest, ApiError> {
    let f = Fields(body);
    let model = model_field(&f)?;
    let messages = messages_field(&f)?;
    let sampling = sampling_fields(&f, &["max_tokens", "max_completion_tokens"])?;
    let logprobs = f.boolean("logprobs")?.unwrap_or(false);
    // Only the chosen token's logprob is reported; a top_logprobs count is accepted.
    f.uint("top_logprobs", 0, MAX_LOGPROBS as u64)?;
    f.string("user")?;
    Ok(ChatRequest { model, messages, sampling, logprobs })
}

fn messages_field(f: &Fields) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(v) = f.get("messages") else {
        return Err(ApiError::invalid("messages", "messages: missing (a list of {role, content})"));
    };
    let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
        return Err(ApiError::invalid("messages", format!("messages: expected a non-empty list of {{role, content}}, got {}", shown(v))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let bad = |what: String| ApiError::invalid(&param, format!("{param}: {what}"));
            let Some(obj) = m.as_object() else { return Err(bad(format!("expected an object {{role, content}}, got {}", shown(m)))) };
            let role = match obj.get("role").and_then(Value::as_str) {
                Some(r) if role_label(r).is_some() => r.to_string(),
                Some(r) => return Err(bad(format!("role \"{r}\" is not one of system, developer, user, assistant"))),
                None => return Err(bad("role: missing (system, developer, user or assistant)".into())),
            };
            let content = match obj.get("content") {
                Some(Value::String(s)) => s.clone(),
                // The list form: text parts are joined; other parts (images, audio) are refused.
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => return Err(bad(format!("content: only text parts are supported, got {}", shown(p)))),
                        }
                    }
                    text
                }
                Some(Value::Null) | None if role == "assistant" => String::new(),
                Some(other) => return Err(bad(format!("content: expected a string, got {}", shown(other)))),
                None => return Err(bad("content: missing".into())),
            };
            Ok(ChatMessage { role, content })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn param_of(e: ApiError) -> String {
        e.param.unwrap_or_default()
    }

    #[test]
    fn prompts_in_every_form() {
        let r = completion_request(&body(json!({"prompt": "hi"}))).unwrap();
        assert_eq!(r.prompts, vec![PromptInput::Text("hi".into())]);
        assert_eq!(r.sampling.max_tokens, 16);
        let r = completion_request(&body(json!({"prompt": ["a", "b"], "n": 2}))).unwrap();
        assert_eq!(r.prompts.len(), 2);
        let r = completion_request(&body(json!({"prompt": [1, 2, 3]}))).unwrap();
        assert_eq!(r.prompts, vec![PromptInput::Tokens(vec![1, 2, 3])]);
        let r = completion_request(&body(json!({"prompt": [[1], [2, 3]]}))).unwrap();
        assert_eq!(r.prompts, vec![PromptInput::Tokens(vec![1]), PromptInput::Tokens(vec![2, 3])]);
    }

    #[test]
    fn each_bad_field_is_named() {
        for (b, param) in [
            (json!({"prompt": "x", "max_tokens": -1}), "max_tokens"),
            (json!({"prompt": "x", "temperature": "hot"}), "temperature"),
            (json!({"prompt": "x", "top_p": 2}), "top_p"),
            (json!({"prompt": "x", "top_p": 0}), "top_p"),
            (json!({"prompt": "x", "n": 0}), "n"),
            (json!({"prompt": "x", "stop": 5}), "stop"),
            (json!({"prompt": "x", "stop": [""]}), "stop"),
            (json!({"prompt": "x", "logprobs": 21}), "logprobs"),
            (json!({"prompt": "x", "echo": "yes"}), "echo"),
            (json!({"prompt": "x", "seed": 1.5}), "seed"),
            (json!({"prompt": "x", "top_k": -2}), "top_k"),
            (json!({"prompt": "x", "model": 3}), "model"),
            (json!({"prompt": "x", "frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"prompt": "x", "stream_options": 3}), "stream_options"),
            (json!({"prompt": "x", "stream_options": {"include_usage": "yes"}}), "stream_options"),
            (json!({"prompt": ["x"], "n": 100, "best_of": 3}), "best_of"),
            (json!({"prompt": [-1]}), "prompt"),
            (json!({"prompt": []}), "prompt"),
            (json!({"prompt": {"a": 1}}), "prompt"),
            (json!({}), "prompt"),
        ] {
            assert_eq!(param_of(completion_request(&body(b.clone())).unwrap_err()), param, "{b}");
        }
        for (b, param) in [
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"role": "robot", "content": "x"}]}), "messages[0]"),
            (json!({"messages": [{"role": "user", "content": "x"}, {"role": "user"}]}), "messages[1]"),
            (json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -3}), "max_completion_tokens"),
        ] {
            assert_eq!(param_of(chat_request(&body(b.clone())).unwrap_err()), param, "{b}");
        }
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert!(parse_body(b"{nope").unwrap_err().message.contains("request body"));
        assert!(parse_body(b"[1]").unwrap_err().message.contains("request body"));
        assert!(parse_body(b"{}").is_ok());
    }

    #[test]
    fn sampling_fields_read_as_openai_does() {
        let r = chat_request(&body(json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "max_completion_tokens": 5, "temperature": 0, "top_k": -1, "stop": null, "seed": -1, "stream": true}))).unwrap();
        assert_eq!(r.messages[0].content, "ab");
        assert_eq!((r.sampling.max_tokens, r.sampling.temperature, r.sampling.top_k, r.sampling.seed, r.sampling.stream), (5, 0.0, 0, Some(u64::MAX), true));
        assert!(r.sampling.stop.is_empty());
    }
}
