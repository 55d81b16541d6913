//! `dctk data ingest|verify|stats`: build, check and describe token corpora with `dctk-data`.
//!
//! `ingest` turns documents (JSONL, JSONL.gz, text, Parquet) into a corpus directory of token
//! shards and a `manifest.ron` (byte-identical when run again on the same inputs); a study then
//! names that directory as `train(#{ corpus: DIR })`. Every flag maps onto a field of
//! `dctk_data::IngestConfig`, so scripts reach the same thing with `ingest(#{...})`.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use dctk_data::{Corpus, DomainInput, EntropyOptions, EntropySplit, IngestConfig, Normalisation, OpenOptions, Proxy, DEFAULT_VAL_FRACTION};

use crate::corpus::{corpus_stats, describe, ingest_summary, input_domains, mixture_of, tokenizer_spec};

pub fn cli() -> Command {
    Command::new("data")
        .about("Build (ingest) and check token corpora")
        .subcommand_required(true)
        .subcommand(
            Command::new("ingest")
                .about("Tokenize documents into a corpus directory (token shards + manifest.ron)")
                .arg(
                    Arg::new("inputs")
                        .num_args(0..)
                        .value_parser(value_parser!(PathBuf))
                        .help("JSONL files (one domain each, named by the file stem) or directories of them"),
                )
                .arg(Arg::new("out").long("out").required(true).value_parser(value_parser!(PathBuf)).help("Corpus directory to write"))
                .arg(
                    Arg::new("domain")
                        .long("domain")
                        .action(ArgAction::Append)
                        .value_name("NAME=PATH[,PATH…]")
                        .help("A named domain from files or directories (read recursively); repeatable"),
                )
                .arg(Arg::new("text-field").long("text-field").default_value("text").help("JSON field (or Parquet column) holding the text"))
                .arg(
                    Arg::new("tokenizer")
                        .long("tokenizer")
                        .default_value("gpt2")
                        .help("gpt2, a tokenizer.json path, or bpe:VOCAB to train a byte-level BPE on the inputs"),
                )
                .arg(Arg::new("eot").long("eot").help("Separator token of a tokenizer.json"))
                .arg(
                    Arg::new("special-token")
                        .long("special-token")
                        .action(ArgAction::Append)
                        .help("A string that becomes one id after the tokenizer's vocabulary (repeatable, in id order), e.g. BoLT's <|START_OF_LATENT|>"),
                )
                .arg(
                    Arg::new("val-fraction")
                        .long("val-fraction")
                        .value_parser(value_parser!(f64))
                        .help(format!(
                            "Fraction of documents held out for validation (by a hash of their text) [default: {DEFAULT_VAL_FRACTION}, as for train]"
                        )),
                )
                .arg(Arg::new("dedup").long("dedup").action(ArgAction::SetTrue).help("Drop exact duplicate documents"))
                .arg(Arg::new("min-chars").long("min-chars").value_parser(value_parser!(usize)).default_value("1").help("Drop shorter documents"))
                .arg(Arg::new("threads").long("threads").value_parser(value_parser!(usize)).default_value("0").help("Worker threads (0 = all cores)"))
                .arg(Arg::new("overwrite").long("overwrite").action(ArgAction::SetTrue).help("Replace an existing corpus (once the new one is complete)"))
                .arg(Arg::new("no-progress").long("no-progress").action(ArgAction::SetTrue).help("No progress bar")),
        )
        .subcommand(
            Command::new("verify")
                .about("Open a corpus, checking sizes, blake3 hashes, indexes, token ids, counts and the tokenizer; print its domains")
                .arg(Arg::new("dir").required(true).value_parser(value_parser!(PathBuf))),
        )
        .subcommand(
            Command::new("stats")
                .about("Token counts and entropy proxies per domain (SE, JE, CE as BiMix's collect_ce.py, VNE), and mixtures made from them")
                .arg(Arg::new("dir").required(true).value_parser(value_parser!(PathBuf)).help("Corpus directory"))
                .arg(Arg::new("domain").long("domain").action(ArgAction::Append).help("Only this domain (repeatable; default: all)"))
                .arg(
                    Arg::new("split")
                        .long("split")
                        .default_value("train")
                        .value_parser(value_parser!(EntropySplit))
                        .help("Documents to count: train (what studies train on), val or all"),
                )
                .arg(
                    Arg::new("vne-top-k")
                        .long("vne-top-k")
                        .value_parser(value_parser!(usize))
                        .default_value("1024")
                        .help("VNE: the most frequent tokens with a bucket of their own (the rest share one)"),
                )
                .arg(
                    Arg::new("memory-mb")
                        .long("memory-mb")
                        .value_parser(value_parser!(u64))
                        .default_value("512")
                        .help("Memory for the bigram tables (more passes over the shards when the corpus needs more)"),
                )
                .arg(
                    Arg::new("mixture")
                        .long("mixture")
                        .value_parser(value_parser!(Proxy))
                        .help("Also print the mixture made from this proxy: se, je, ce or vne"),
                )
                .arg(
                    Arg::new("normalise")
                        .long("normalise")
                        .value_parser(value_parser!(Normalisation))
                        .help("How proxy values become proportions, required with --mixture: proportional (r ∝ H) or softmax[:TEMPERATURE] (r ∝ exp(H/τ), τ = 1)"),
                )
                .arg(Arg::new("threads").long("threads").value_parser(value_parser!(usize)).default_value("0").help("Worker threads (0 = all cores)"))
                .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Print the statistics (and mixture) as JSON")),
        )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    match args.subcommand() {
        Some(("ingest", a)) => ingest(a),
        Some(("verify", a)) => verify(a),
        Some(("stats", a)) => stats(a),
        _ => unreachable!("clap requires a known subcommand"),
    }
}

fn ingest(a: &ArgMatches) -> Result<()> {
    let inputs: Vec<PathBuf> = a.get_many::<PathBuf>("inputs").map(|v| v.cloned().collect()).unwrap_or_default();
    let mut domains = input_domains(&inputs).map_err(anyhow::Error::msg)?;
    for spec in a.get_many::<String>("domain").into_iter().flatten() {
        let Some((name, paths)) = spec.split_once('=') else {
            bail!("--domain {spec}: expected NAME=PATH[,PATH…]");
        };
        let paths: Vec<PathBuf> = paths.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        if name.is_empty() || paths.is_empty() {
            bail!("--domain {spec}: expected NAME=PATH[,PATH…]");
        }
        domains.push(DomainInput::new(name, paths));
    }
    let val_fraction = a.get_one::<f64>("val-fraction").copied().unwrap_or(DEFAULT_VAL_FRACTION);
    if !(0.0..1.0).contains(&val_fraction) {
        bail!("--val-fraction must be in [0, 1), got {val_fraction}");
    }
    let text_field = a.get_one::<String>("text-field").unwrap();
    for d in &mut domains {
        d.input.text_field = text_field.clone();
        d.val_fraction = val_fraction;
    }
    let cfg = IngestConfig {
        out: a.get_one::<PathBuf>("out").unwrap().clone(),
        domains,
        tokenizer: tokenizer_spec(a.get_one::<String>("tokenizer").unwrap(), a.get_one::<String>("eot").cloned())
            .map_err(anyhow::Error::msg)?,
        dedup: a.get_flag("dedup"),
        min_chars: *a.get_one::<usize>("min-chars").unwrap(),
        threads: *a.get_one::<usize>("threads").unwrap(),
        progress: !a.get_flag("no-progress") && std::io::stderr().is_terminal(),
        overwrite: a.get_flag("overwrite"),
        special_tokens: a.get_many::<String>("special-token").map(|v| v.cloned().collect()).unwrap_or_default(),
        ..Default::default()
    };
    let s = ingest_summary(&cfg).map_err(anyhow::Error::msg)?;
    println!(
        "{}: {} documents, {} tokens ({}, vocab {}) in {:.2} s: {:.1} MB/s, {:.0} tokens/s",
        s["out"].as_str().unwrap_or_default(),
        s["docs"],
        s["tokens"],
        s["tokenizer"].as_str().unwrap_or_default(),
        s["vocab_size"],
        s["seconds"].as_f64().unwrap_or(0.0),
        s["mb_per_s"].as_f64().unwrap_or(0.0),
        s["tokens_per_s"].as_f64().unwrap_or(0.0),
    );
    println!("{:<16} {:>9} {:>12} {:>12} {:>10} {:>9}", "domain", "docs", "tokens", "train", "val", "dropped");
    for d in s["domains"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>9} {:>12} {:>12} {:>10} {:>9}",
            d["name"].as_str().unwrap_or_default(),
            d["docs"],
            d["tokens"],
            d["train_tokens"],
            d["val_tokens"],
            d["dropped_duplicates"].as_u64().unwrap_or(0) + d["dropped_empty"].as_u64().unwrap_or(0),
        );
    }
    Ok(())
}

fn verify(a: &ArgMatches) -> Result<()> {
    let dir = a.get_one::<PathBuf>("dir").unwrap();
    // Opening checks every shard's size, hash, index, ids and the manifest's counts; the
    // tokenizer is rebuilt to check its hash, vocabulary size and separator too.
    let corpus = Corpus::open(dir).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    corpus.tokenizer().map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let t = &corpus.manifest.tokenizer;
    println!("{}: ok ({} tokenizer, vocab {}, {} tokens)", dir.display(), t.kind, t.vocab_size, corpus.manifest.total_tokens());
    println!("{:<16} {:>9} {:>12} {:>12} {:>10}", "domain", "docs", "tokens", "train", "val");
    for d in corpus.domains() {
        let m = &d.manifest;
        println!("{:<16} {:>9} {:>12} {:>12} {:>10}", d.name, m.docs, m.tokens, m.train_tokens, m.val_tokens);
    }
    Ok(())
}

fn stats(a: &ArgMatches) -> Result<()> {
    let dir = a.get_one::<PathBuf>("dir").unwrap();
    let mixture = match (a.get_one::<Proxy>("mixture"), a.get_one::<Normalisation>("normalise")) {
        (Some(p), Some(n)) => Some((*p, *n)),
        (Some(_), None) => bail!("--mixture needs --normalise proportional|softmax[:TEMPERATURE]: BiMix's release does not say how its entropies became proportions, so the choice is yours"),
        (None, Some(_)) => bail!("--normalise needs --mixture se|je|ce|vne"),
        (None, None) => None,
    };
    // Sizes and index structure are checked on open; hashing every shard would double the
    // time of a statistic that reads each token anyway (`dctk data verify` does that).
    let corpus = Corpus::open_with(dir, OpenOptions { verify_hashes: false }).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let opts = EntropyOptions {
        split: *a.get_one::<EntropySplit>("split").unwrap(),
        vne_top_k: *a.get_one::<usize>("vne-top-k").unwrap(),
        memory_bytes: a.get_one::<u64>("memory-mb").unwrap().max(&1) << 20,
        threads: *a.get_one::<usize>("threads").unwrap(),
    };
    let domains: Vec<String> = a.get_many::<String>("domain").map(|v| v.cloned().collect()).unwrap_or_default();
    let start = std::time::Instant::now();
    let stats = corpus_stats(&corpus, &domains, &opts)?;
    let seconds = start.elapsed().as_secs_f64();
    let mix = mixture.map(|(p, n)| mixture_of(&stats, p, n)).transpose()?;
    let tokens: u64 = stats.iter().map(|s| s.entropy.tokens).sum();
    if a.get_flag("json") {
        let mut out = serde_json::json!({ "corpus": dir.display().to_string(), "split": opts.split, "seconds": seconds, "domains": stats });
        if let (Some(mix), Some((p, n))) = (&mix, mixture) {
            out["mixture"] = serde_json::json!({ "proxy": p, "normalisation": n, "proportions": mix.iter().map(|(d, r)| serde_json::json!({"domain": d, "proportion": r})).collect::<Vec<_>>() });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: {:?} split, {} tokens in {:.2} s ({:.2} M tokens/s); entropies in nats; VNE over the {} most frequent tokens + 1 shared bucket",
        dir.display(),
        opts.split,
        tokens,
        seconds,
        tokens as f64 / seconds.max(1e-9) / 1e6,
        opts.vne_top_k,
    );
    print!("{:<16} {:>8} {:>12} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8}", "domain", "docs", "tokens", "distinct", "bigrams", "SE", "JE", "CE", "VNE");
    if let Some((p, _)) = mixture {
        print!(" {:>9}", format!("r({p:?})").to_uppercase().replace("R(", "r("));
    }
    println!();
    for (i, s) in stats.iter().enumerate() {
        let e = &s.entropy;
        print!(
            "{:<16} {:>8} {:>12} {:>9} {:>11} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            e.domain, e.documents, e.tokens, e.distinct_tokens, e.distinct_bigrams, e.shannon, e.joint, e.conditional, s.von_neumann
        );
        if let Some(mix) = &mix {
            print!(" {:>9.5}", mix[i].1);
        }
        println!();
    }
    if let Some((_, n)) = mixture {
        println!("mixture normalisation: {}", match n {
            Normalisation::Proportional => "proportional (r_i = H_i / sum H)".to_string(),
            Normalisation::Softmax { temperature } => format!("softmax (r_i = exp(H_i/{temperature}) / sum exp(H/{temperature}))"),
        });
    }
    Ok(())
}
