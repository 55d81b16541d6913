//! Augmenter throughput, `dctk bench augment`: one `generate` cell with an augmenter, run
//! exactly as a study runs it (plan, request cache, assemble, the output corpus ingested),
//! side by side in one process with
//!
//! * **raw generation**: the same requests (read back from that cell's request cache, so
//!   they are the very prompts and sampling settings the augmenter planned) decoded by a
//!   freshly loaded [`LocalGenerator`] with no cache, no augmenter and no corpus: what the
//!   pipeline costs beyond decoding is `pipeline / raw − 1` (target < 10%);
//! * **through `dctk serve`**: the same cell with an `openai` generator pointed at `dctk
//!   serve`'s stack on a loopback port (started in-process), so the HTTP client, the server's
//!   batcher and JSON are in the loop.
//!
//! Every side starts from nothing (the model loaded inside the timed region, a fresh request
//! cache per round), so the ratio compares like with like. Tokens are counted twice:
//! *generated* (completion tokens, what decoding produced) and *synthetic* (tokens of the
//! output corpus, what a training run can read: for a stitched megadoc the two agree up to
//! separators; for stretch and latent thoughts the source text is in the output too).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dctk_data::Corpus;
use tch::Device;

use crate::generate::client::OpenAiSettings;
use crate::generate::generator::{Generator, LocalGenerator, TextRequest};
use crate::generate::request_cache::{request_cache_dir, CachedResponse, RequestCache};
use crate::generate::LoadedModel;
use crate::study::generate_cell::{self, GenerateResult, GenerateSpec, GeneratorSpec};
use crate::train::ExecOptions;

/// What to measure.
#[derive(Clone, Debug)]
pub struct AugmentBench {
    /// A finished (or checkpointed) training cell: the generator.
    pub run_dir: PathBuf,
    /// `generate`'s settings without `generator` (`augmenter`, `n_per_doc`, `max_docs`, …).
    pub spec: serde_json::Value,
    /// Prompts decoded together by the local generator (and the server's max batch and the
    /// client's concurrency).
    pub batch_size: usize,
    pub device: Device,
    pub threads: Option<usize>,
    /// Where the rounds' cells and caches go (removed at the end).
    pub scratch: PathBuf,
}

/// One timed side of one round.
#[derive(Clone, Debug)]
pub struct AugmentRow {
    /// `pipeline`, `raw` or `serve`.
    pub side: &'static str,
    pub round: usize,
    pub seconds: f64,
    pub requests: u64,
    /// Completion tokens decoded.
    pub generated_tokens: u64,
    /// Tokens of the output corpus (none for `raw`, which writes no corpus).
    pub synthetic_tokens: Option<u64>,
}

impl AugmentRow {
    pub fn generated_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.seconds
    }
}

/// The generation cell of `b` with `generator`, planned under `runs_root` (a fresh
/// directory: its request cache is empty), executed; returns its result and wall time.
fn run_cell(spec: &GenerateSpec, generator: GeneratorSpec, corpus: &Corpus, runs_root: &Path) -> Result<(GenerateResult, f64)> {
    std::fs::create_dir_all(runs_root).with_context(|| format!("creating {}", runs_root.display()))?;
    let started = Instant::now();
    let cell = generate_cell::prepare_generate(spec, generator, "bench", corpus, runs_root)?;
    generate_cell::materialize(&cell)?;
    let result = generate_cell::execute(&cell.dir, &cell.manifest(), &ExecOptions::default())?;
    let seconds = started.elapsed().as_secs_f64();
    if result.failed > 0 || result.sent != result.requests {
        bail!("bench cell {}: {} of {} requests sent, {} failed (the cache must start empty)", cell.id, result.sent, result.requests, result.failed);
    }
    Ok((result, seconds))
}

/// Every exchange in a cell's request cache, in key order (the order decides no number:
/// each request has its own seed).
fn cached_exchanges(runs_root: &Path) -> Result<Vec<CachedResponse>> {
    RequestCache::new(request_cache_dir(runs_root))
        .answer_files()
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// The cell's requests in the order it sent them (document by document, as its
/// `documents.jsonl` lists what each output used), so raw decoding batches the same prompts
/// together as the pipeline did (batches of one document's prompts pad least).
fn in_plan_order(exchanges: &[CachedResponse], result: &GenerateResult) -> Result<Vec<TextRequest>> {
    let by_seed: std::collections::HashMap<u64, &TextRequest> = exchanges.iter().map(|r| (r.request.params.seed, &r.request)).collect();
    let path = Path::new(&result.corpus).join("documents.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
        for u in row["uses"].as_array().into_iter().flatten() {
            let seed = u["seed"].as_u64().with_context(|| format!("{}: a use without a seed", path.display()))?;
            if seen.insert(seed) {
                out.push((*by_seed.get(&seed).with_context(|| format!("{}: seed {seed} is not in the request cache", path.display()))?).clone());
            }
        }
    }
    if out.len() != exchanges.len() {
        bail!("{}: the documents use {} of the {} cached requests", path.display(), out.len(), exchanges.len());
    }
    Ok(out)
}

/// Completion tokens of a cell's answers, as the backend reported them.
fn completion_tokens(exchanges: &[CachedResponse]) -> u64 {
    exchanges.iter().map(|r| r.completion.completion_tokens.unwrap_or(0)).sum()
}

/// Raw decoding of `requests`: the model loaded, every request completed, nothing cached.
fn raw_generation(b: &AugmentBench, requests: &[TextRequest]) -> Result<(u64, f64)> {
    let started = Instant::now();
    let generator = LocalGenerator::new(LoadedModel::open(&b.run_dir, b.device)?, b.batch_size);
    let answers = generator.complete(requests, &|_, _| {});
    let seconds = started.elapsed().as_secs_f64();
    let mut tokens = 0;
    for (i, a) in answers.into_iter().enumerate() {
        let c = a.with_context(|| format!("raw generation: request {i}"))?;
        tokens += c.completion_tokens.unwrap_or(0);
    }
    Ok((tokens, seconds))
}

/// `dctk serve`'s stack for `b.run_dir` on a free loopback port, on its own thread and
/// runtime, until the returned sender is dropped. Returns the base URL and the model name.
fn start_server(b: &AugmentBench) -> Result<(String, String, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let opts = crate::serve::ServeOptions {
        run_dir: b.run_dir.clone(),
        host: "127.0.0.1".into(),
        port: 0,
        max_batch: b.batch_size,
        device: b.device,
        threads: b.threads,
        log_requests: false,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(String, String)>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("starting the server's runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async move {
            match crate::serve::start(opts).await {
                Ok(server) => {
                    let _ = ready_tx.send(Ok((format!("http://{}/v1", server.addr), server.model.clone())));
                    // Serve until the bench drops its sender.
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                    drop(server);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let (url, model) = ready_rx.recv().context("the server thread ended before it listened")??;
    Ok((url, model, stop_tx, thread))
}

/// Runs `rounds` rounds of pipeline, raw and (with `serve`) server sides, alternating, and
/// returns every row. The first round is preceded by an untimed warm-up of the pipeline.
pub fn augment_throughput(b: &AugmentBench, rounds: usize, serve: bool) -> Result<Vec<AugmentRow>> {
    if rounds == 0 || b.batch_size == 0 {
        bail!("--rounds and --batch must be at least 1");
    }
    let model = LoadedModel::open(&b.run_dir, Device::Cpu)?;
    let (run_id, corpus_dir, context) = (model.run_id.clone(), model.corpus_dir.clone(), model.config.max_seq_len as u64);
    drop(model);
    // Every side fits its prompts to the model's context alike: a local generator does so by
    // itself, an `openai` one only when told (`max_prompt_tokens`).
    let mut spec = b.spec.clone();
    if spec.get("max_prompt_tokens").is_none() {
        let completion = spec.get("max_tokens").and_then(|m| m.as_u64()).unwrap_or(0);
        spec["max_prompt_tokens"] = context.saturating_sub(completion).into();
    }
    let spec = GenerateSpec::from_json(spec).map_err(|e| anyhow::anyhow!("bench augment: {e}"))?;
    let corpus = Corpus::open(&corpus_dir).map_err(|e| anyhow::anyhow!("{}: {}", corpus_dir.display(), crate::corpus::describe(&e)))?;
    let local = GeneratorSpec::Local {
        run_id,
        run_dir: b.run_dir.display().to_string(),
        device: crate::env::device_name(b.device),
        batch_size: b.batch_size,
    };
    let server = if serve { Some(start_server(b)?) } else { None };
    let mut rows = Vec::new();
    let scratch = |name: String| b.scratch.join(name).join("runs");
    run_cell(&spec, local.clone(), &corpus, &scratch("warmup".into()))?;
    for round in 1..=rounds {
        let root = scratch(format!("pipeline-{round}"));
        let (result, seconds) = run_cell(&spec, local.clone(), &corpus, &root)?;
        let exchanges = cached_exchanges(&root)?;
        let requests = in_plan_order(&exchanges, &result)?;
        rows.push(AugmentRow { side: "pipeline", round, seconds, requests: result.requests, generated_tokens: completion_tokens(&exchanges), synthetic_tokens: Some(result.generated_tokens) });
        let (tokens, seconds) = raw_generation(b, &requests)?;
        rows.push(AugmentRow { side: "raw", round, seconds, requests: requests.len() as u64, generated_tokens: tokens, synthetic_tokens: None });
        if let Some((url, model, _, _)) = &server {
            let settings = OpenAiSettings { base_url: url.clone(), model: model.clone(), api_key_env: None, concurrency: b.batch_size, timeout_s: 600.0, max_retries: 0 };
            let root = scratch(format!("serve-{round}"));
            let (result, seconds) = run_cell(&spec, GeneratorSpec::OpenAi(settings), &corpus, &root)?;
            let generated = completion_tokens(&cached_exchanges(&root)?);
            rows.push(AugmentRow { side: "serve", round, seconds, requests: result.requests, generated_tokens: generated, synthetic_tokens: Some(result.generated_tokens) });
        }
    }
    if let Some((_, _, stop, thread)) = server {
        drop(stop);
        let _ = thread.join();
    }
    let _ = std::fs::remove_dir_all(&b.scratch);
    Ok(rows)
}
