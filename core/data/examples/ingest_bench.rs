//! Ingest-throughput benchmark: ingest `DOMAIN=PATH` inputs into `OUT` with GPT-2 and print one
//! JSON line (MB/s, tokens/s, peak RSS). Driven by `bench/data/run.sh`.
//!
//! usage: ingest_bench OUT DOMAIN=PATH [DOMAIN=PATH ...] [--threads N] [--chunk-kb N] [--progress] [--dedup]

use std::path::PathBuf;

use dctk_data::{ingest_with_stats, DomainInput, IngestConfig};

fn peak_rss_kb() -> u64 {
    // VmHWM: the process's peak resident set size.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .expect("usage: ingest_bench OUT DOMAIN=PATH ..."),
    );
    let mut cfg = IngestConfig {
        out: out.clone(),
        overwrite: true,
        ..Default::default()
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                cfg.threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--threads N")
            }
            "--progress" => cfg.progress = true,
            "--dedup" => cfg.dedup = true,
            "--chunk-kb" => {
                cfg.chunk_bytes = args
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("--chunk-kb N")
                    << 10
            }
            _ => {
                let (name, path) = a.split_once('=').expect("inputs are DOMAIN=PATH");
                match cfg.domains.iter_mut().find(|d| d.name == name) {
                    Some(d) => d.paths.push(path.into()),
                    None => cfg.domains.push(DomainInput::new(name, vec![path.into()])),
                }
            }
        }
    }
    let rss_before_kb = peak_rss_kb();
    match ingest_with_stats(&cfg) {
        Ok((m, s)) => println!(
            "{{\"input_mb\":{:.2},\"seconds\":{:.2},\"mb_per_s\":{:.2},\"tokens\":{},\"tokens_per_s\":{:.0},\"docs\":{},\"threads\":{},\"peak_rss_mb\":{:.1},\"rss_at_start_mb\":{:.1},\"shards\":{}}}",
            s.input_bytes as f64 / 1e6,
            s.seconds,
            s.mb_per_s,
            s.tokens,
            s.tokens_per_s,
            s.docs,
            rayon::current_num_threads(),
            peak_rss_kb() as f64 / 1024.0,
            rss_before_kb as f64 / 1024.0,
            m.domains.iter().map(|d| d.shards.len()).sum::<usize>()
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
