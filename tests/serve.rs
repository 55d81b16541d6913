//! `dctk serve` end to end: a micro model trained for a few steps, served by a real
//! `dctk serve` process on a free loopback port, driven by plain HTTP clients (reqwest, and
//! a raw TCP socket for the client that walks away mid-stream). What the server answers is
//! checked against `dctk sample` and the library (`LoadedModel::generate` / `score`) on the
//! same checkpoint.
#[path = "support/mod.rs"]
mod support;
use support::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dctk::generate::{GenRequest, LoadedModel, SamplingParams};
use serde_json::{json, Value};

/// The `dctk serve` process; killed if a check fails before the clean shutdown.
struct ServerProc {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl ServerProc {
    /// `dctk serve <run>` started in `dir` (the study directory: a run's manifest names its
    /// corpus relative to it).
    fn start(dir: &Path, run: &Path, log: PathBuf) -> ServerProc {
        let mut child = Command::new(dctk_bin())
            .current_dir(dir)
            .args(["serve", run.to_str().unwrap(), "--port", "0", "--threads", "1", "--max-batch", "32"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting dctk serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let listening: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("listening line {line:?}: {e}; log: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        assert_eq!(listening["event"], "listening", "{line}");
        let addr = listening["addr"].as_str().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "binds loopback by default: {addr}");
        assert_eq!(listening["model"].as_str(), run.file_name().unwrap().to_str());
        ServerProc { child: Some(child), addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the process must exit cleanly within a few seconds.
    fn terminate(mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "dctk serve exited with {status} after SIGTERM; log:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < until, "dctk serve did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A blocking face over reqwest's async client.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(addr: &str) -> Http {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Http { rt, client: reqwest::Client::new(), base: format!("http://{addr}") }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let r = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    }

    /// POST a raw body; the status and the body text.
    fn post_text(&self, path: &str, body: String) -> (u16, String) {
        self.rt.block_on(async {
            let r = self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.post_text(path, body.to_string());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} {body}: not JSON ({e}): {text}")))
    }

    /// POST that must succeed.
    fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self.post(path, body);
        assert_eq!(status, 200, "{path} {body}: {v}");
        v
    }

    /// The `data:` payloads of a streamed response, in order.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let (status, text) = self.post_text(path, body.to_string());
        assert_eq!(status, 200, "{text}");
        text.split("\n\n").filter(|e| !e.trim().is_empty()).map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data event: {e:?}")).to_string()).collect()
    }
}

fn texts(v: &Value) -> Vec<String> {
    v["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap().to_string()).collect()
}

#[test]
fn serves_the_openai_api_from_a_real_process() {
    let s = Scratch::new("serve");
    let script = s.write(
        "serve.rhai",
        r#"let r = train(#{ name: "tiny", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 64, batch_size: 4, threads: 1 });"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();

    let server = ServerProc::start(s.path(), &run, s.path().join("serve.log"));
    let http = Http::new(&server.addr);
    // Valid completion requests sent, which /health must count exactly.
    let mut sent = 0u64;

    // /health and /v1/models.
    let (status, health) = http.get("/health");
    assert_eq!((status, health["status"].as_str(), health["model"].as_str()), (200, Some("ok"), Some(run_id.as_str())), "{health}");
    assert_eq!(health["requests_served"], 0);
    let (status, models) = http.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"].as_str(), Some(run_id.as_str()), "{models}");
    assert_eq!(models["data"][0]["max_model_len"], 64);

    // Greedy over HTTP = greedy in the library, on the same checkpoint.
    tch::set_num_threads(1);
    // The run's manifest names its corpus (and so its tokenizer) relative to the study
    // directory, as `dctk serve` above reads it; the only other test here is #[ignore]d.
    std::env::set_current_dir(s.path()).unwrap();
    let model = LoadedModel::open(&run, tch::Device::Cpu).unwrap();
    let prompt_ids = model.encode("The");
    let local = model
        .generate(&[GenRequest { prompt: prompt_ids.clone(), params: SamplingParams { max_tokens: 12, temperature: 0.0, ..SamplingParams::default() } }])
        .unwrap();
    let greedy = http.ok("/v1/completions", &json!({"model": run_id, "prompt": "The", "max_tokens": 12, "temperature": 0}));
    sent += 1;
    assert_eq!(greedy["object"], "text_completion");
    assert_eq!(texts(&greedy), vec![local[0].text.clone()], "{greedy}");
    assert_eq!(greedy["choices"][0]["finish_reason"], local[0].finish_reason.as_str());
    assert_eq!(greedy["usage"]["prompt_tokens"], prompt_ids.len());
    assert_eq!(greedy["usage"]["completion_tokens"], local[0].tokens.len());
    // ... and = `dctk sample`'s greedy text.
    let out = dctk(s.path(), &["sample", run.to_str().unwrap(), "--threads", "1", "--json", "-p", "The", "--max-tokens", "12", "-t", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    let sampled: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(sampled["text"].as_str(), Some(texts(&greedy)[0].as_str()), "{sampled}");
    // The same prompt as token ids, and the model named by its study label.
    let by_ids = http.ok("/v1/completions", &json!({"model": "tiny", "prompt": prompt_ids, "max_tokens": 12, "temperature": 0}));
    sent += 1;
    assert_eq!(texts(&by_ids), texts(&greedy));

    // Seeds: the same seed gives the same text; choice j of n is sampled with seed + j.
    let sampled = json!({"prompt": "The", "max_tokens": 10, "temperature": 1.0, "n": 2, "seed": 7, "ignore_eos": true});
    let a = http.ok("/v1/completions", &sampled);
    let b = http.ok("/v1/completions", &sampled);
    let c = http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 10, "temperature": 1.0, "seed": 8, "ignore_eos": true}));
    sent += 3;
    assert_eq!(texts(&a).len(), 2);
    assert_eq!(a["choices"][1]["index"], 1);
    assert_eq!(texts(&a), texts(&b), "same seed, same texts");
    assert_eq!(texts(&a)[1], texts(&c)[0], "choice 1 of seed 7 is seed 8");
    assert_eq!(a["usage"]["completion_tokens"], 20, "ignore_eos: every choice has max_tokens tokens");

    // A list of prompts (strings and token-id lists): one choice each, in order.
    let list = http.ok("/v1/completions", &json!({"prompt": ["The", "A quote"], "max_tokens": 5, "temperature": 0}));
    let list_ids = http.ok("/v1/completions", &json!({"prompt": [prompt_ids, model.encode("A quote")], "max_tokens": 5, "temperature": 0}));
    sent += 2;
    assert_eq!(texts(&list).len(), 2);
    assert_eq!(texts(&list), texts(&list_ids));
    assert_eq!(texts(&list)[0], texts(&http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 5, "temperature": 0})))[0]);
    sent += 1;
    assert_eq!(list["usage"]["prompt_tokens"], prompt_ids.len() + model.encode("A quote").len());

    // echo + logprobs + max_tokens 0 scores the prompt, as vLLM does.
    let text_to_score = "The quick brown fox jumps";
    let ids = model.encode(text_to_score);
    let scored = http.ok("/v1/completions", &json!({"prompt": text_to_score, "echo": true, "logprobs": 1, "max_tokens": 0}));
    sent += 1;
    assert_eq!(texts(&scored), vec![text_to_score.to_string()]);
    let lp = &scored["choices"][0]["logprobs"];
    let token_logprobs = lp["token_logprobs"].as_array().unwrap();
    assert_eq!(token_logprobs.len(), ids.len(), "{lp}");
    assert!(token_logprobs[0].is_null(), "the first token has no logprob: {lp}");
    let expected = model.score(&ids[..1], &ids[1..]).unwrap();
    for (got, want) in token_logprobs[1..].iter().zip(&expected) {
        assert!((got.as_f64().unwrap() - f64::from(*want)).abs() < 1e-5, "{got} vs {want}");
    }
    assert_eq!(lp["tokens"].as_array().unwrap().len(), ids.len());
    assert_eq!(lp["text_offset"][0], 0);
    // logprobs of generated tokens are the model's own.
    let with_lp = http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 12, "temperature": 0, "logprobs": 0}));
    sent += 1;
    let reported: Vec<f64> = with_lp["choices"][0]["logprobs"]["token_logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(reported.len(), local[0].token_logprobs.len());
    for (g, w) in reported.iter().zip(&local[0].token_logprobs) {
        assert!((g - f64::from(*w)).abs() < 1e-5);
    }

    // max_tokens beyond the context is capped: the completion fills the context and ends "length".
    let long = http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 1000, "temperature": 0, "ignore_eos": true}));
    sent += 1;
    assert_eq!(long["choices"][0]["finish_reason"], "length");
    assert_eq!(long["usage"]["completion_tokens"], 64 - prompt_ids.len());

    // Chat: the documented template, a reply, and its stream.
    let chat_body = json!({"model": run_id, "messages": [{"role": "system", "content": "Quotes."}, {"role": "user", "content": "Say something."}], "max_tokens": 12, "temperature": 0});
    let chat = http.ok("/v1/chat/completions", &chat_body);
    sent += 1;
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    let rendered = dctk::generate::chat::render(&[
        dctk::generate::chat::ChatMessage { role: "system".into(), content: "Quotes.".into() },
        dctk::generate::chat::ChatMessage { role: "user".into(), content: "Say something.".into() },
    ]);
    let chat_local = model
        .generate(&[GenRequest {
            prompt: model.encode(&rendered),
            params: SamplingParams { max_tokens: 12, temperature: 0.0, stop: vec!["\n\nUser:".into()], ..SamplingParams::default() },
        }])
        .unwrap();
    assert_eq!(chat["choices"][0]["message"]["content"].as_str(), Some(chat_local[0].text.as_str()), "{chat}");
    let mut streamed_chat = chat_body.clone();
    streamed_chat["stream"] = json!(true);
    let events = http.stream("/v1/chat/completions", &streamed_chat);
    sent += 1;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(Some(content.as_str()), chat["choices"][0]["message"]["content"].as_str());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], chat["choices"][0]["finish_reason"]);

    // A streamed completion adds up to the non-streamed one (temperature 0).
    let plain = http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 20, "temperature": 0}));
    let events = http.stream("/v1/completions", &json!({"prompt": "The", "max_tokens": 20, "temperature": 0, "stream": true}));
    sent += 2;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let joined: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(joined, texts(&plain)[0]);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], plain["choices"][0]["finish_reason"]);

    // Streams of n = 2 sampled choices with echo: per index, the deltas add up to the
    // non-streamed choice (the same seed); the usage chunk comes last when asked for.
    let body = json!({"prompt": "The", "max_tokens": 10, "n": 2, "seed": 11, "echo": true, "logprobs": 0});
    let plain = http.ok("/v1/completions", &body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = http.stream("/v1/completions", &streamed);
    sent += 2;
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"].as_array().map(Vec::len), Some(0), "{usage_chunk}");
    assert_eq!(usage_chunk["usage"], plain["usage"]);
    for (index, want) in texts(&plain).iter().enumerate() {
        let of_index = chunks.iter().filter(|c| c["choices"].get(0).is_some_and(|ch| ch["index"] == index));
        let joined: String = of_index.clone().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
        assert_eq!(&joined, want, "choice {index}");
        assert!(want.starts_with("The"), "echo: {want}");
        let streamed_lps: Vec<Value> = of_index.flat_map(|c| c["choices"][0]["logprobs"]["token_logprobs"].as_array().cloned().unwrap_or_default()).collect();
        assert_eq!(&Value::Array(streamed_lps), &plain["choices"][index]["logprobs"]["token_logprobs"], "choice {index}");
    }
    // Chat logprobs: one entry per generated token.
    let mut with_lp = chat_body.clone();
    with_lp["logprobs"] = json!(true);
    let chat_lp = http.ok("/v1/chat/completions", &with_lp);
    sent += 1;
    assert_eq!(chat_lp["choices"][0]["logprobs"]["content"].as_array().unwrap().len(), chat_lp["usage"]["completion_tokens"].as_u64().unwrap() as usize);
    assert!(chat_lp["choices"][0]["logprobs"]["content"][0]["logprob"].as_f64().unwrap() <= 0.0);

    // 16 concurrent requests are all answered, and batched onto the model.
    let before = http.get("/health").1;
    let answers: Vec<(u16, Value)> = http.rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (client, url) = (http.client.clone(), format!("{}/v1/completions", http.base));
                tokio::spawn(async move {
                    let r = client.post(url).json(&json!({"prompt": format!("Quote {i}:"), "max_tokens": 16, "seed": i, "ignore_eos": true})).send().await.unwrap();
                    (r.status().as_u16(), r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    sent += 16;
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 16);
    }
    let after = http.get("/health").1;
    let batches = after["batches_run"].as_u64().unwrap() - before["batches_run"].as_u64().unwrap();
    assert!(batches < 16, "16 concurrent requests took {batches} batches: {after}");
    assert!(after["largest_batch"].as_u64().unwrap() > 1, "{after}");

    // A malformed request per field: a 4xx whose OpenAI error JSON names the field.
    for (path, body, code, param) in [
        ("/v1/completions", json!({"prompt": "x", "max_tokens": -1}), 400, "max_tokens"),
        ("/v1/completions", json!({"prompt": "x", "temperature": "hot"}), 400, "temperature"),
        ("/v1/completions", json!({"prompt": "x", "top_p": 2}), 400, "top_p"),
        ("/v1/completions", json!({"prompt": "x", "n": 0}), 400, "n"),
        ("/v1/completions", json!({"prompt": "x", "stop": 5}), 400, "stop"),
        ("/v1/completions", json!({"prompt": "x", "logprobs": "many"}), 400, "logprobs"),
        ("/v1/completions", json!({"max_tokens": 3}), 400, "prompt"),
        ("/v1/completions", json!({"prompt": "word ".repeat(100)}), 400, "prompt"),
        ("/v1/completions", json!({"prompt": [[1, 2], [99_999_999]]}), 400, "prompt[1]"),
        ("/v1/completions", json!({"prompt": "x", "model": "no-such-model"}), 404, "model"),
        ("/v1/chat/completions", json!({"max_tokens": 3}), 400, "messages"),
        ("/v1/chat/completions", json!({"messages": [{"role": "wizard", "content": "hi"}]}), 400, "messages[0]"),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}), 400, "temperature"),
    ] {
        let (status, v) = http.post(path, &body);
        assert_eq!(status, code, "{path} {body}: {v}");
        assert_eq!(v["error"]["param"].as_str(), Some(param), "{path} {body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(param.split('[').next().unwrap()), "{v}");
    }
    let (status, text) = http.post_text("/v1/completions", "{\"prompt\": ".into());
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("body"), "{v}");
    // (Its own client: the server closes a connection whose body it did not read.)
    let (status, text) = Http::new(&server.addr).post_text("/v1/completions", format!("{{\"prompt\": \"{}\"}}", "x".repeat(3 << 20)));
    assert_eq!(status, 413, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"]["message"].as_str().unwrap().contains("body"), "{text}");
    let (status, v) = http.get("/v1/nowhere");
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (status, v) = http.get("/v1/completions");
    assert_eq!((status, v["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{v}");

    // A client that disconnects mid-stream: the server goes on and answers the next request.
    let body = json!({"prompt": "The", "max_tokens": 60, "n": 8, "stream": true, "ignore_eos": true, "temperature": 1.0}).to_string();
    let mut sock = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(sock, "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", server.addr, body.len()).unwrap();
    sent += 1;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&seen));
    drop(sock);
    let next = http.ok("/v1/completions", &json!({"prompt": "The", "max_tokens": 12, "temperature": 0}));
    sent += 1;
    assert_eq!(texts(&next), texts(&greedy));

    let health = http.get("/health").1;
    // The walked-away stream's 8 entries were cancelled in the batch (each asked for 60
    // tokens; the client left after the first event).
    assert!(health["entries_cancelled"].as_u64().unwrap() >= 1, "{health}");
    assert_eq!(health["requests_served"].as_u64(), Some(sent), "every valid completion request counted once: {health}");
    assert!(server.log().contains("POST /v1/completions 200"), "requests are logged to stderr");
    drop(http);
    server.terminate();

    // The server-throughput benchmark (`dctk bench generate`'s serving half), in-process.
    let rows = dctk::serve::bench::throughput(&run, tch::Device::Cpu, Some(1), &[1, 4], 2, 4).unwrap();
    assert_eq!(rows.iter().map(|r| (r.clients, r.requests)).collect::<Vec<_>>(), vec![(1, 2), (4, 8)]);
    for r in &rows {
        assert!(r.requests_per_s > 0.0 && (r.tokens_per_s - 4.0 * r.requests_per_s).abs() < 1e-6 * r.tokens_per_s.max(1.0), "{r:?}");
    }
}

/// Server throughput at 1, 8 and 32 concurrent clients (for the README; not part of CI):
/// `cargo test --release -p dctk --test serve -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_server_throughput() {
    let s = Scratch::new("serve-bench");
    let script = s.write(
        "bench.rhai",
        r#"let r = train(#{ name: "bench", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 128, batch_size: 4, threads: 1 });"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    std::env::set_current_dir(s.path()).unwrap();
    let threads = std::env::var("DCTK_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let device = dctk::env::resolve_device(&std::env::var("DCTK_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into())).unwrap();
    let rows = dctk::serve::bench::throughput(&run, device, Some(threads), &[1, 8, 32], 4, 64).unwrap();
    println!("clients requests seconds requests/s tokens/s batches (micro model, 64 tokens per request, {threads} threads, {device:?})");
    for r in &rows {
        println!("{:7} {:8} {:7.2} {:10.2} {:8.1} {:7}", r.clients, r.requests, r.seconds, r.requests_per_s, r.tokens_per_s, r.batches);
    }
    assert_eq!(rows.len(), 3);
}
