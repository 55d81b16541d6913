//! `dctk serve`: an OpenAI-compatible HTTP server for one dctk model (axum on tokio).
//!
//! This module owns start-up (the model worker, then the listener), the router, request
//! logging and the clean shutdown. The parts: [`api`] (the request bodies and the error
//! JSON), [`endpoints`] (the handlers and the response and stream shapes), [`batcher`] (the
//! one thread that owns the model and decodes waiting requests as one batch), [`bench`]
//! (server throughput, for `dctk bench generate`).
//!
//! Routes: `GET /health`, `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/completions`,
//! `POST /v1/chat/completions`. Any other path is a 404 and a wrong method a 405, both as
//! OpenAI's error JSON.
pub mod api;
pub mod batcher;
pub mod bench;
pub mod endpoints;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tch::Device;
use tokio::sync::oneshot;

use batcher::{Batcher, Job, ModelInfo, Stats};

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `runs/<id>`: a finished cell, or one with a checkpoint.
    pub run_dir: PathBuf,
    /// Address to bind (loopback unless told otherwise).
    pub host: String,
    /// 0 = a free port.
    pub port: u16,
    /// Most entries (prompts × choices) decoded in one batch.
    pub max_batch: usize,
    pub device: Device,
    /// libtorch intra-op threads of the model worker.
    pub threads: Option<usize>,
    /// Log each request to stderr.
    pub log_requests: bool,
}

/// What every handler shares.
pub struct AppState {
    pub info: ModelInfo,
    /// The model worker's inbox; taken (closing it) at shutdown.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    pub stats: Arc<Stats>,
    /// Completion requests (both endpoints) that passed validation and were handed to the
    /// model worker: what `/health` reports as `requests_served`.
    pub requests_served: AtomicU64,
    pub max_batch: usize,
    /// Unix seconds the server started (the model's `created`).
    pub created_unix_s: u64,
}

impl AppState {
    /// The worker's inbox, or `None` once the server is shutting down.
    pub fn job_sender(&self) -> Option<mpsc::Sender<Job>> {
        self.jobs.lock().ok().and_then(|g| g.clone())
    }

    /// Whether `asked` names the model served (its run id, or its study label).
    pub fn serves(&self, asked: &str) -> bool {
        asked == self.info.run_id || self.info.label.as_deref() == Some(asked)
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// The model name served (the run id).
    pub model: String,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// The router over a shared state.
pub fn router(state: Arc<AppState>, log_requests: bool) -> Router {
    let app = Router::new()
        .route("/health", get(endpoints::health))
        .route("/v1/models", get(endpoints::models))
        .route("/v1/models/{id}", get(endpoints::model))
        .route("/v1/completions", post(endpoints::completions))
        .route("/v1/chat/completions", post(endpoints::chat_completions))
        .fallback(endpoints::not_found)
        .method_not_allowed_fallback(endpoints::method_not_allowed)
        .with_state(state);
    if log_requests {
        app.layer(middleware::from_fn(log_request))
    } else {
        app
    }
}

/// One stderr line per request: method, path, status, time to the response head.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    eprintln!("{method} {path} {} {:.1} ms", resp.status().as_u16(), started.elapsed().as_secs_f64() * 1e3);
    resp
}

/// Loads the model (in its worker thread), binds, and starts serving in the current tokio
/// runtime. Returns once the listener is bound.
pub async fn start(opts: ServeOptions) -> Result<Server> {
    let ServeOptions { run_dir, host, port, max_batch, device, threads, log_requests } = opts;
    let Batcher { jobs, stats, info, thread } =
        tokio::task::spawn_blocking(move || batcher::spawn(run_dir, device, threads, max_batch)).await.context("the model loader panicked")??;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await.with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr()?;
    let created_unix_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let model = info.run_id.clone();
    let state = Arc::new(AppState { info, jobs: Mutex::new(Some(jobs)), stats, requests_served: AtomicU64::new(0), max_batch, created_unix_s });
    let app = router(state.clone(), log_requests);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server { addr, model, state, stop: Some(stop), task, worker: Some(thread) })
}

impl Server {
    /// Stops accepting connections, lets the requests in flight finish, then stops the
    /// model worker.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.task).await.map_err(|e| anyhow!("the HTTP server task failed: {e}"))?;
        served.context("serving HTTP")?;
        // Closing the inbox ends the worker's loop once its current batch is done.
        if let Ok(mut jobs) = self.state.jobs.lock() {
            jobs.take();
        }
        if let Some(worker) = self.worker.take() {
            tokio::task::spawn_blocking(move || worker.join()).await?.map_err(|_| anyhow!("the model worker panicked"))?;
        }
        Ok(())
    }
}

/// `dctk serve`: serve until SIGINT or SIGTERM, then shut down cleanly. Prints one JSON
/// line to stdout once listening: `{"event":"listening","addr":"HOST:PORT","model":"<run id>"}`.
pub fn run(opts: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let server = start(opts).await?;
        let line = serde_json::json!({ "event": "listening", "addr": server.addr.to_string(), "model": server.model });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        drop(out);
        eprintln!(
            "dctk serve: {} (step {}, {}) on http://{} — max batch {}",
            server.model, server.state.info.step, server.state.info.device, server.addr, server.state.max_batch
        );
        wait_for_signal().await?;
        eprintln!("dctk serve: shutting down");
        server.shutdown().await
    })
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
