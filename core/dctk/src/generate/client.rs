//! The OpenAI-compatible HTTP client of the `openai` generator: `POST {base_url}/completions`
//! (the legacy completions endpoint, which vLLM, llama.cpp's server, SGLang, TGI and
//! `dctk serve` all speak) with bounded concurrency, a per-request timeout, and retries
//! with exponential backoff and full jitter (Brooker 2015, "Exponential Backoff And
//! Jitter", AWS Architecture Blog) on 429, 5xx and connection errors, honouring
//! `Retry-After` (seconds). Any other 4xx is a clear error quoting the server's message.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::generator::{Generator, TextCompletion, TextRequest};

/// How to reach an OpenAI-compatible server (the `#{ kind: "openai", ... }` map of a script).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenAiSettings {
    /// e.g. `http://127.0.0.1:8000/v1` (requests go to `{base_url}/completions`).
    pub base_url: String,
    /// The `model` field of every request.
    pub model: String,
    /// The environment variable holding the API key (sent as `Authorization: Bearer`);
    /// none: no key is sent (a local server).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds one attempt of one request may take.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Attempts after the first, on 429, 5xx, timeouts and connection errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout_s() -> f64 {
    600.0
}
fn default_max_retries() -> u32 {
    5
}

/// The first wait before a retry; each further retry doubles it, up to [`MAX_BACKOFF_S`].
pub const BASE_BACKOFF_S: f64 = 0.5;
pub const MAX_BACKOFF_S: f64 = 30.0;

impl OpenAiSettings {
    /// Checks the settings; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("key \"base_url\": \"{}\" is not an http:// or https:// URL", self.base_url));
        }
        if self.model.trim().is_empty() {
            return Err("key \"model\": must name the server's model".into());
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(format!("key \"concurrency\": {} must be in 1..=4096", self.concurrency));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(format!("key \"timeout_s\": {} must be a positive number of seconds", self.timeout_s));
        }
        if let Some(v) = &self.api_key_env {
            if v.is_empty() || v.contains('=') {
                return Err(format!("key \"api_key_env\": \"{v}\" is not an environment variable name"));
            }
        }
        Ok(())
    }

    /// `{base_url}/completions`, without a doubled slash.
    pub fn completions_url(&self) -> String {
        format!("{}/completions", self.base_url.trim().trim_end_matches('/'))
    }

    /// The backend identity in request caches: `openai:<base_url>#<model>`.
    pub fn identity(&self) -> String {
        format!("openai:{}#{}", self.base_url.trim().trim_end_matches('/'), self.model)
    }
}

/// A generator over an OpenAI-compatible server.
pub struct OpenAiGenerator {
    pub settings: OpenAiSettings,
    api_key: Option<String>,
    client: reqwest::Client,
    /// Set by Ctrl-C / SIGTERM: requests not yet sent fail as cancelled.
    cancel: Option<Arc<AtomicBool>>,
}

/// What the server answered to one attempt.
enum Attempt {
    Done(TextCompletion),
    /// Worth another try (429, 5xx, timeout, connection error), after `retry_after` if the
    /// server said.
    Retry { why: String, retry_after: Option<Duration> },
    Fatal(anyhow::Error),
}

impl OpenAiGenerator {
    /// Reads the API key from the environment (an error names the variable when it is unset).
    pub fn new(settings: OpenAiSettings, cancel: Option<Arc<AtomicBool>>) -> Result<OpenAiGenerator> {
        settings.validate().map_err(|e| anyhow!("generator {e}"))?;
        let api_key = match &settings.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                anyhow!("generator key \"api_key_env\": the environment variable {var} is not set (it should hold the API key of {})", settings.base_url)
            })?),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .connect_timeout(Duration::from_secs_f64(settings.timeout_s.min(30.0)))
            .build()
            .context("building the HTTP client")?;
        Ok(OpenAiGenerator { settings, api_key, client, cancel })
    }

    fn body(&self, r: &TextRequest) -> serde_json::Value {
        let p = &r.params;
        let mut body = serde_json::json!({
            "model": self.settings.model,
            "prompt": r.prompt,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": p.seed,
            "n": 1,
        });
        let m = body.as_object_mut().expect("a map");
        if !p.stop.is_empty() {
            m.insert("stop".into(), serde_json::json!(p.stop));
        }
        // Not in OpenAI's API, but understood by vLLM, SGLang and `dctk serve`: sent only when set.
        if p.top_k > 0 {
            m.insert("top_k".into(), serde_json::json!(p.top_k));
        }
        if p.ignore_eot {
            m.insert("ignore_eos".into(), serde_json::json!(true));
        }
        body
    }

    async fn attempt(&self, index: usize, r: &TextRequest) -> Attempt {
        let url = self.settings.completions_url();
        let mut req = self.client.post(&url).json(&self.body(r));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Attempt::Retry { why: format!("{url}: {}", error_chain(&e)), retry_after: None },
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Attempt::Retry { why: format!("{url}: reading the answer: {}", error_chain(&e)), retry_after: None },
        };
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry { why: format!("{url} answered {status}: {}", server_message(&text)), retry_after };
        }
        if !status.is_success() {
            return Attempt::Fatal(anyhow!("request {index}: {url} answered {status}: {}", server_message(&text)));
        }
        match parse_completion(&text) {
            Ok(c) => Attempt::Done(c),
            Err(e) => Attempt::Fatal(anyhow!("request {index}: {url}: {e}")),
        }
    }

    /// One request to the end: attempts with backoff until done, fatal, or out of retries.
    async fn send(&self, index: usize, r: &TextRequest) -> Result<TextCompletion> {
        let mut attempt = 0u32;
        loop {
            if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                bail!("request {index}: cancelled before it was sent");
            }
            match self.attempt(index, r).await {
                Attempt::Done(c) => return Ok(c),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry { why, retry_after } => {
                    if attempt >= self.settings.max_retries {
                        bail!("request {index}: gave up after {} attempt(s): {why}", attempt + 1);
                    }
                    tokio::time::sleep(backoff(attempt, retry_after)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The wait before retry `attempt` (0-based): what the server asked for, else "full
/// jitter": uniform in [0, min(cap, base × 2^attempt)], so many clients that failed
/// together do not retry together.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let ceiling = (BASE_BACKOFF_S * 2f64.powi(attempt.min(30) as i32)).min(MAX_BACKOFF_S);
    Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling).max(0.01))
}

/// An error with its causes (reqwest puts "connection refused" in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The server's error message: OpenAI's `{"error": {"message": …}}`, else the body (shortened).
fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(|m| m.as_str()) {
            return m.to_string();
        }
        if let Some(m) = v.get("error").and_then(|m| m.as_str()) {
            return m.to_string();
        }
    }
    let body = body.trim();
    if body.chars().count() > 300 {
        format!("{}…", body.chars().take(300).collect::<String>())
    } else if body.is_empty() {
        "(empty body)".into()
    } else {
        body.to_string()
    }
}

/// `choices[0].text`, its `finish_reason` and `usage.completion_tokens`.
fn parse_completion(body: &str) -> Result<TextCompletion> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| anyhow!("the answer is not JSON ({e}): {}", server_message(body)))?;
    let choice = v.pointer("/choices/0").ok_or_else(|| anyhow!("the answer has no choices[0]: {}", server_message(body)))?;
    let text = choice.get("text").and_then(|t| t.as_str()).ok_or_else(|| anyhow!("choices[0] has no string \"text\""))?;
    Ok(TextCompletion {
        text: text.to_string(),
        finish_reason: choice.get("finish_reason").and_then(|f| f.as_str()).unwrap_or("stop").to_string(),
        completion_tokens: v.pointer("/usage/completion_tokens").and_then(|n| n.as_u64()),
    })
}

impl Generator for OpenAiGenerator {
    fn identity(&self) -> String {
        self.settings.identity()
    }

    fn complete(&self, requests: &[TextRequest], on_done: &(dyn Fn(usize, &Result<TextCompletion>) + Sync)) -> Vec<Result<TextCompletion>> {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return requests.iter().map(|_| Err(anyhow!("starting the HTTP runtime: {e}"))).collect(),
        };
        let semaphore = tokio::sync::Semaphore::new(self.settings.concurrency);
        let mut out: Vec<Option<Result<TextCompletion>>> = (0..requests.len()).map(|_| None).collect();
        runtime.block_on(async {
            let mut in_flight: FuturesUnordered<_> = requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let semaphore = &semaphore;
                    async move {
                        let _permit = semaphore.acquire().await.expect("the semaphore is never closed");
                        let result = self.send(i, r).await;
                        // Persisted by the caller before the next request takes the permit.
                        on_done(i, &result);
                        (i, result)
                    }
                })
                .collect();
            while let Some((i, result)) = in_flight.next().await {
                out[i] = Some(result);
            }
        });
        out.into_iter().map(|r| r.expect("every request ends")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_retry_after_and_stays_under_its_ceiling() {
        assert_eq!(backoff(3, Some(Duration::from_secs(7))), Duration::from_secs(7));
        for attempt in 0..12 {
            let d = backoff(attempt, None).as_secs_f64();
            assert!(d <= (BASE_BACKOFF_S * 2f64.powi(attempt as i32)).min(MAX_BACKOFF_S) + 1e-9, "{attempt}: {d}");
        }
    }

    #[test]
    fn server_errors_are_quoted_and_answers_parsed() {
        assert_eq!(server_message(r#"{"error": {"message": "max_tokens must be positive", "type": "invalid_request_error"}}"#), "max_tokens must be positive");
        assert_eq!(server_message(""), "(empty body)");
        let c = parse_completion(r#"{"choices": [{"text": "hi", "finish_reason": "length"}], "usage": {"completion_tokens": 3}}"#).unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason.as_str(), c.completion_tokens), ("hi", "length", Some(3)));
        assert!(parse_completion(r#"{"choices": []}"#).unwrap_err().to_string().contains("no choices[0]"));
    }

    #[test]
    fn settings_are_checked_by_key_and_the_identity_ignores_a_trailing_slash() {
        let s = |url: &str| OpenAiSettings { base_url: url.into(), model: "m".into(), api_key_env: None, concurrency: 8, timeout_s: 600.0, max_retries: 5 };
        assert!(s("ftp://x").validate().unwrap_err().contains("key \"base_url\""));
        assert_eq!(s("http://h:1/v1/").identity(), s("http://h:1/v1").identity());
        assert_eq!(s("http://h:1/v1/").completions_url(), "http://h:1/v1/completions");
        let missing = OpenAiSettings { api_key_env: Some("DCTK_TEST_SURELY_UNSET_KEY".into()), ..s("http://h:1/v1") };
        let e = OpenAiGenerator::new(missing, None).err().unwrap().to_string();
        assert!(e.contains("DCTK_TEST_SURELY_UNSET_KEY is not set"), "{e}");
    }
}
