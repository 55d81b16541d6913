//! Server throughput, the serving half of `dctk bench generate`: `dctk serve`'s stack
//! (router, batcher, model worker) started in-process on a free loopback port and driven by
//! N concurrent HTTP clients, each sending its requests one after another, as a generation
//! job with bounded concurrency does.
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tch::Device;

use super::ServeOptions;

/// Throughput at one number of concurrent clients.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputRow {
    pub clients: usize,
    /// Requests answered (clients × requests per client).
    pub requests: usize,
    /// Wall time of the whole round.
    pub seconds: f64,
    pub requests_per_s: f64,
    /// Completion tokens (as each response's `usage` reports) per second.
    pub tokens_per_s: f64,
    /// Batches the worker decoded in the round (fewer than `requests` when it batched).
    pub batches: u64,
}

/// Serves `run_dir` with a max batch of the largest client count and measures each client
/// count in turn. Every request asks for `max_tokens` tokens from the same short prompt at
/// temperature 1 with `ignore_eos` (so each completion has exactly `max_tokens` tokens,
/// context permitting), each with its own seed.
pub fn throughput(run_dir: &Path, device: Device, threads: Option<usize>, clients: &[usize], requests_per_client: usize, max_tokens: usize) -> Result<Vec<ThroughputRow>> {
    if clients.is_empty() || clients.contains(&0) || requests_per_client == 0 {
        bail!("server throughput: client counts and requests per client must be positive (got {clients:?}, {requests_per_client})");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let opts = ServeOptions {
            run_dir: run_dir.to_path_buf(),
            host: "127.0.0.1".into(),
            port: 0,
            max_batch: clients.iter().copied().max().unwrap_or(1),
            device,
            threads,
            log_requests: false,
        };
        let server = super::start(opts).await?;
        let url = format!("http://{}/v1/completions", server.addr);
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().context("building the HTTP client")?;
        // One request first, so the first round does not pay for warming up.
        complete(&http, &url, 0, max_tokens).await?;
        let mut rows = Vec::new();
        for &n in clients {
            let batches_before = server.state.stats.batches_run.load(std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            let tasks: Vec<_> = (0..n)
                .map(|c| {
                    let (http, url) = (http.clone(), url.clone());
                    tokio::spawn(async move {
                        let mut tokens = 0;
                        for r in 0..requests_per_client {
                            tokens += complete(&http, &url, (c * requests_per_client + r + 1) as u64, max_tokens).await?;
                        }
                        Ok::<usize, anyhow::Error>(tokens)
                    })
                })
                .collect();
            let mut tokens = 0;
            for t in tasks {
                tokens += t.await.context("a benchmark client panicked")??;
            }
            let seconds = started.elapsed().as_secs_f64();
            let requests = n * requests_per_client;
            rows.push(ThroughputRow {
                clients: n,
                requests,
                seconds,
                requests_per_s: requests as f64 / seconds,
                tokens_per_s: tokens as f64 / seconds,
                batches: server.state.stats.batches_run.load(std::sync::atomic::Ordering::Relaxed) - batches_before,
            });
        }
        server.shutdown().await?;
        Ok(rows)
    })
}

/// One completion request; returns its completion tokens.
async fn complete(http: &reqwest::Client, url: &str, seed: u64, max_tokens: usize) -> Result<usize> {
    let body = json!({ "prompt": "The", "max_tokens": max_tokens, "temperature": 1.0, "seed": seed, "ignore_eos": true });
    let resp = http.post(url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.with_context(|| format!("POST {url}: reading the response"))?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {v}");
    }
    v["usage"]["completion_tokens"].as_u64().map(|t| t as usize).with_context(|| format!("POST {url}: no usage.completion_tokens in {v}"))
}
