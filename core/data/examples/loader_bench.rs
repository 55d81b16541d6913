//! Loader-throughput benchmark: how many tokens/s the [`Sampler`] serves for the trainer's
//! shapes, mixing every domain of a corpus (equal weights, full training splits, repeating).
//! Divide by the trainer's tokens/s to get the headroom (target ≥ 20×).
//!
//! usage: loader_bench CORPUS_DIR [--seconds S]

use std::time::Instant;

use dctk_data::{
    Corpus, Exhaustion, MixDomain, Packing, Proportions, Sampler, SamplerConfig, ValBatches,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: loader_bench CORPUS_DIR [--seconds S]");
    let mut budget_s = 3.0;
    while let Some(a) = args.next() {
        if a == "--seconds" {
            budget_s = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--seconds S");
        }
    }
    let t = Instant::now();
    let corpus = Corpus::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let open_s = t.elapsed().as_secs_f64();
    println!(
        "{{\"open_verify_seconds\":{open_s:.3},\"corpus_tokens\":{}}}",
        corpus.manifest.total_tokens()
    );
    for (name, seq_len, batch_size) in [("tiny", 256usize, 16usize), ("72m", 2048, 128)] {
        for cross in [true, false] {
            let domains: Vec<MixDomain> = corpus
                .domains()
                .iter()
                .map(|d| MixDomain {
                    subset: d.train_subset(),
                    exhaustion: Exhaustion::Repeat,
                })
                .collect();
            let n = domains.len();
            let cfg = SamplerConfig {
                seq_len,
                batch_size,
                seed: 0,
                proportions: Proportions::Constant(vec![1.0; n]),
                packing: Packing {
                    cross_doc_attention: cross,
                },
            };
            let mut s = Sampler::new(domains, cfg).unwrap();
            let t = Instant::now();
            let mut steps = 0u64;
            let mut seg_checksum = 0u64;
            while t.elapsed().as_secs_f64() < budget_s {
                let b = s.next_batch().unwrap();
                if !cross {
                    // Include building the per-row segment ids a block-diagonal mask needs.
                    for i in 0..b.batch_size {
                        seg_checksum += *b.segment_ids(i).last().unwrap() as u64;
                    }
                }
                steps += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            let tokens = steps * (seq_len * batch_size) as u64;
            println!(
                "{{\"shape\":\"{name}\",\"seq_len\":{seq_len},\"batch_size\":{batch_size},\"cross_doc_attention\":{cross},\"steps\":{steps},\"seconds\":{secs:.2},\"tokens_per_s\":{:.0},\"steps_per_s\":{:.1},\"seg\":{seg_checksum}}}",
                tokens as f64 / secs,
                steps as f64 / secs
            );
        }
        let d = &corpus.domains()[0];
        let t = Instant::now();
        let vb: Vec<_> =
            ValBatches::new(d.val_subset(), seq_len, batch_size, usize::MAX, true).collect();
        let toks: usize = vb.iter().map(|b| b.batch_size * b.seq_len).sum();
        println!(
            "{{\"shape\":\"{name}\",\"val_domain\":\"{}\",\"val_batches\":{},\"val_tokens_per_s\":{:.0}}}",
            d.name,
            vb.len(),
            toks as f64 / t.elapsed().as_secs_f64().max(1e-9)
        );
    }
}
