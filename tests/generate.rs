//! Generation cells end to end: a study trains a micro model, generates a corpus domain
//! from it in-process (`local`), and trains a second model on the generated corpus; a
//! rerun asks nothing twice and every generated document traces to its source. The
//! `openai` backend against a real `dctk serve` process: the server SIGKILLed
//! mid-generation, the cell rerun against a restarted server sends exactly the requests
//! that were not answered before; 429 (with Retry-After) and 503 are retried, from a real
//! loopback server in front of `dctk serve`; a 4xx and an unset API key variable are clear
//! errors.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

const SOURCE: &str = r#"
let src = train(#{ name: "src", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1,
                   val_tokens: 256, seq_len: 32, batch_size: 8, lr: 3e-3, seed: 1, threads: 1 });
"#;

const TEMPLATE: &str = "Rephrase: {document}\nRephrased:";

fn local_study() -> String {
    format!(
        r#"{SOURCE}
let gen = generate(#{{ name: "gen", generator: #{{ kind: "local", run: src, device: "cpu" }}, template: "{}",
                      template_name: "rephrase", n_per_doc: 2, max_docs: 4, max_tokens: 8, temperature: 1.0, seed: 5,
                      val_fraction: 0.5 }});
let second = train(#{{ name: "on-gen", model: "micro", corpus: gen, unique_tokens: gen.train_tokens, epochs: 4,
                      val_tokens: 5, seq_len: 4, batch_size: 2, lr: 3e-3, seed: 1, threads: 1 }});
print(`gen requests=${{gen.requests}} hits=${{gen.cache_hits}} sent=${{gen.sent}} docs=${{gen.generated_docs}}`);
print(`second ${{second.status}} ${{second.final_val_loss}}`);
"#,
        TEMPLATE.replace('\n', "\\n")
    )
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The cell directory whose manifest says `kind: "generate"`.
fn generate_cell(runs: &Path) -> PathBuf {
    let found: Vec<PathBuf> = cells(runs).into_iter().filter(|d| std::fs::read_to_string(d.join("manifest.ron")).is_ok_and(|m| m.starts_with("GenerateManifest("))).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

#[test]
fn a_study_generates_from_its_own_model_and_trains_on_the_result() {
    let s = Scratch::new("generate-local");
    let script = s.write("g.rhai", &local_study());
    let script = script.to_str().unwrap();
    let out = dctk(s.path(), &["run", script, "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("gen requests=8 hits=0 sent=8 docs=8"), "{t}");
    assert!(t.contains("second done"), "{t}");
    let runs = s.path().join("runs");
    let gen = generate_cell(&runs);
    let generated_jsonl = std::fs::read(gen.join("generated.jsonl")).unwrap();

    // The corpus: one synthetic domain, the source's tokenizer, documents.jsonl aligned.
    let corpus = dctk_data::Corpus::open(gen.join("corpus")).unwrap();
    let domain = corpus.domain("generated").unwrap();
    assert!(domain.kind.is_synthetic(), "{:?}", domain.kind);
    assert_eq!(corpus.manifest.tokenizer.kind, "gpt2");
    let docs = read_jsonl(&gen.join("corpus/documents.jsonl"));
    assert_eq!(docs.len() as u64, domain.manifest.docs);
    // Every generated document names its source: the source's content key is the key of
    // the raw document at that index, and the template is the one asked with.
    let raw: Vec<String> = std::fs::read_to_string(repo_root().join("data/corpora/quotes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let template_hash = blake3::hash(TEMPLATE.as_bytes()).to_hex().to_string();
    let mut sources = std::collections::BTreeSet::new();
    for d in &docs {
        assert_eq!(d["source"]["domain"], "quotes", "{d}");
        let index = d["source"]["index"].as_u64().unwrap() as usize;
        assert_eq!(d["source"]["key"].as_str().unwrap(), format!("{:016x}", dctk_data::manifest::doc_key(&raw[index])), "{d}");
        assert_eq!(d["meta"]["template"]["name"], "rephrase");
        assert_eq!(d["meta"]["template"]["blake3"], template_hash.as_str());
        sources.insert(index);
    }
    assert_eq!(sources.len(), 4, "4 source documents × 2 samples");
    let r = result(&gen);
    assert_eq!((r["requests"].as_u64(), r["sent"].as_u64(), r["failed"].as_u64()), (Some(8), Some(8), Some(0)));
    assert!(r["truncated_prompts"].as_u64().unwrap() > 0, "quotes are longer than the micro model's context leaves: {r}");

    // `dctk plan` shows the generate cell with its request count.
    let out = dctk(s.path(), &["plan", script]);
    assert!(text(&out).contains("generate: 8 request(s)"), "{}", text(&out));

    // The generation cell removed and the study rerun: every answer comes from the cache,
    // the corpus is the same, so the second model (same data fingerprint) is reused.
    std::fs::remove_dir_all(&gen).unwrap();
    let out = dctk(s.path(), &["run", script, "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gen requests=8 hits=8 sent=0 docs=8"), "{}", text(&out));
    assert!(text(&out).contains("1 run now"), "only the generation cell ran: {}", text(&out));
    assert_eq!(std::fs::read(gen.join("generated.jsonl")).unwrap(), generated_jsonl);
}

/// `dctk serve RUN --port PORT`, with its address once it listens.
fn serve(dir: &Path, run: &Path, port: u16) -> (Child, String, String) {
    let mut child = dctk_cmd(dir)
        .args(["serve", run.to_str().unwrap(), "--port", &port.to_string(), "--threads", "1", "--device", "cpu", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(v["event"], "listening", "{line}");
    (child, v["addr"].as_str().unwrap().to_string(), v["model"].as_str().unwrap().to_string())
}

/// `GET /health` over a plain TCP connection: its `requests_served`.
fn requests_served(addr: &str) -> u64 {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    v["requests_served"].as_u64().unwrap()
}

/// A study generating 4 documents × 3 from quotes through the server at `addr` serving
/// `model`; `extra` adds generator settings, `limit` generate settings.
fn openai_study(addr: &str, model: &str, extra: &str, template: &str, limit: &str) -> String {
    // One retry unless the test sets its own: a killed server fails the cell quickly.
    let retries = if extra.contains("max_retries") { "" } else { ", max_retries: 1" };
    format!(
        r#"let g = generate(#{{ name: "api", generator: #{{ kind: "openai", base_url: "http://{addr}/v1", model: "{model}", concurrency: 1{retries}{extra} }},
                      corpus: "data:corpora/quotes.jsonl", template: "{template}", n_per_doc: 3, max_docs: 4, max_tokens: 16,
                      temperature: 1.0, seed: 3 {limit} }});
print(`api hits=${{g.cache_hits}} sent=${{g.sent}} docs=${{g.generated_docs}}`);
"#
    )
}

#[test]
fn the_openai_backend_resumes_from_its_cache_after_the_server_is_killed() {
    let s = Scratch::new("generate-openai");
    let source = s.write("source.rhai", SOURCE);
    let out = dctk(s.path(), &["run", source.to_str().unwrap(), "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    let (mut server, addr, model) = serve(s.path(), &run, 0);
    const FITS: &str = ", max_prompt_tokens: 16";
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();

    // Generation, with the server SIGKILLed once some answers are cached.
    let study = s.write("api.rhai", &openai_study(&addr, &model, "", "Rephrase: {document}", FITS));
    let study = study.to_str().unwrap();
    let cache = s.path().join(".dctk/requests");
    let count = || -> usize {
        std::fs::read_dir(&cache).map_or(0, |d| d.flatten().map(|sub| std::fs::read_dir(sub.path()).map_or(0, |f| f.count())).sum())
    };
    let mut first = dctk_cmd(s.path()).args(["run", study, "-q"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while count() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no answers cached");
        if first.try_wait().unwrap().is_some() {
            panic!("the generation ended before the kill: {}", text(&first.wait_with_output().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(!out.status.success(), "the generation cannot finish without its server: {}", text(&out));
    let cached = count();
    assert!((2..12).contains(&cached), "{cached} of 12 answered before the kill");
    let gen = generate_cell(&s.path().join("runs"));
    let error = std::fs::read_to_string(gen.join("error.txt")).unwrap();
    assert!(error.contains(&format!("{} of 12 request(s) failed", 12 - cached)), "{error}");

    let out = dctk(s.path(), &["plan", study]);
    assert!(text(&out).contains(&format!("generate: 12 request(s), {cached} cached")), "{}", text(&out));

    // The same port again: the rerun sends exactly what was not answered.
    let (mut server, addr2, _) = serve(s.path(), &run, port);
    assert_eq!(addr2, addr);
    let out = dctk(s.path(), &["run", study, "-q", "--rerun-failed"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("api hits={cached} sent={} docs=12", 12 - cached)), "{}", text(&out));
    assert_eq!(requests_served(&addr) as usize, 12 - cached, "no request was sent twice");
    assert_eq!(count(), 12);

    // Retries: a real HTTP server in front of dctk serve that first answers 429 with
    // Retry-After: 1, then 503, then forwards. The generation waits as told and finishes.
    let proxy = FlakyProxy::start(&addr, vec![(429, Some("1")), (503, None)]);
    let flaky = s.write("flaky.rhai", &openai_study(&proxy.addr, &model, ", max_retries: 2", "Retry: {document}", FITS));
    let t0 = Instant::now();
    let out = dctk(s.path(), &["run", flaky.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(t0.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(proxy.seen(), 12 + 2, "12 requests, 2 of them retried once each");
    // Out of retries: the cell fails, saying why.
    let proxy = FlakyProxy::start(&addr, vec![(503, None)]);
    let gave_up = s.write("gave_up.rhai", &openai_study(&proxy.addr, &model, ", max_retries: 0", "Again: {document}", FITS));
    let out = dctk(s.path(), &["run", gave_up.to_str().unwrap(), "-q"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("gave up after 1 attempt(s)") && text(&out).contains("503 Service Unavailable: overloaded"), "{}", text(&out));

    // A 4xx: the cell fails, quoting the server and the request.
    let long = "word ".repeat(60);
    let bad = s.write("bad.rhai", &openai_study(&addr, &model, "", &format!("{long}{{document}}"), ""));
    let out = dctk(s.path(), &["run", bad.to_str().unwrap(), "-q"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("answered 400 Bad Request") && t.contains("longer than the model's context"), "{t}");
    assert!(t.contains("request 0:"), "{t}");

    // The API key variable unset: the cell fails naming it.
    let keyed = s.write("keyed.rhai", &openai_study(&addr, &model, ", api_key_env: \"DCTK_TEST_API_KEY_UNSET\"", "Say: {document}", FITS));
    let out = dctk_cmd(s.path()).args(["run", keyed.to_str().unwrap(), "-q"]).env_remove("DCTK_TEST_API_KEY_UNSET").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("environment variable DCTK_TEST_API_KEY_UNSET is not set"), "{}", text(&out));
    // Set, it is sent as a bearer token (dctk serve accepts any) and the cell finishes.
    let out = dctk_cmd(s.path()).args(["run", keyed.to_str().unwrap(), "-q", "--rerun-failed"]).env("DCTK_TEST_API_KEY_UNSET", "sk-test").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Settings errors name the key, with the script's position.
    let typo = s.write("typo.rhai", &openai_study(&addr, &model, ", concurency: 4", "Say: {document}", FITS));
    let out = dctk(s.path(), &["plan", typo.to_str().unwrap()]);
    let t = text(&out);
    assert!(t.contains("typo.rhai:1:") && t.contains("unknown key \"generator.concurency\" (did you mean \"generator.concurrency\"?)"), "{t}");
    server.kill().unwrap();
    let _ = server.wait();
}

/// A loopback HTTP server (axum) in front of a real `dctk serve`: it answers the first
/// requests with the given failures (status, Retry-After), then forwards each request.
struct FlakyProxy {
    addr: String,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FlakyProxy {
    fn start(upstream: &str, failures: Vec<(u16, Option<&'static str>)>) -> FlakyProxy {
        use axum::{body::Bytes, extract::State, http::{HeaderMap, StatusCode}, response::IntoResponse, Router};
        use std::sync::{atomic::{AtomicU64, Ordering}, Arc, Mutex};
        #[derive(Clone)]
        struct Shared {
            upstream: String,
            failures: Arc<Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>>,
            seen: Arc<AtomicU64>,
            client: reqwest::Client,
        }
        async fn handle(State(st): State<Shared>, uri: axum::http::Uri, body: Bytes) -> axum::response::Response {
            st.seen.fetch_add(1, Ordering::Relaxed);
            let failure = st.failures.lock().unwrap().pop_front();
            if let Some((status, retry_after)) = failure {
                let mut headers = HeaderMap::new();
                if let Some(s) = retry_after {
                    headers.insert("retry-after", s.parse().unwrap());
                }
                let body = serde_json::json!({"error": {"message": "overloaded", "type": "server_error"}}).to_string();
                return (StatusCode::from_u16(status).unwrap(), headers, body).into_response();
            }
            let answer = st.client.post(format!("http://{}{}", st.upstream, uri.path())).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            (status, answer.bytes().await.unwrap()).into_response()
        }
        let seen = Arc::new(AtomicU64::new(0));
        let shared = Shared { upstream: upstream.to_string(), failures: Arc::new(Mutex::new(failures.into())), seen: seen.clone(), client: reqwest::Client::new() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                axum::serve(listener, Router::new().fallback(handle).with_state(shared)).await.unwrap();
            });
        });
        FlakyProxy { addr: rx.recv().unwrap(), seen }
    }

    fn seen(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}
