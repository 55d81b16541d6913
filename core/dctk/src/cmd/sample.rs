//! `dctk sample runs/<id> --prompt …`: the quick look at what a run learned — continue
//! prompts with the run's checkpoint (decoding: [`crate::generate`]).
use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use super::args::{model_args, open_model};
use crate::generate::{GenRequest, SamplingParams};

pub fn cli() -> Command {
    model_args(Command::new("sample").about("Continue prompts with a run's model (greedy, temperature, top-k, top-p; seeded)").allow_negative_numbers(true))
        .arg(Arg::new("prompt").long("prompt").short('p').action(ArgAction::Append).help("A prompt (repeatable); none = an empty prompt, i.e. a new document"))
        .arg(Arg::new("max-tokens").long("max-tokens").value_parser(value_parser!(usize)).default_value("64").help("Most tokens to generate per sample"))
        .arg(Arg::new("temperature").long("temperature").short('t').value_parser(value_parser!(f64)).default_value("1.0").help("0 = greedy"))
        .arg(Arg::new("top-k").long("top-k").value_parser(value_parser!(usize)).default_value("0").help("Keep the k most likely tokens; 0 = off"))
        .arg(Arg::new("top-p").long("top-p").value_parser(value_parser!(f64)).default_value("1.0").help("Nucleus sampling; 1 = off"))
        .arg(Arg::new("seed").long("seed").value_parser(value_parser!(u64)).default_value("0").help("Seed of sample j of a prompt: seed + j"))
        .arg(Arg::new("n").short('n').long("n").value_parser(value_parser!(usize)).default_value("1").help("Samples per prompt"))
        .arg(Arg::new("stop").long("stop").action(ArgAction::Append).help("Stop before this text (repeatable)"))
        .arg(Arg::new("ignore-eot").long("ignore-eot").action(ArgAction::SetTrue).help("Go on past the end-of-text token"))
        .arg(Arg::new("no-kv-cache").long("no-kv-cache").action(ArgAction::SetTrue).help("Recompute the whole prefix each step (the reference path)"))
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("One JSON object per sample on stdout"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let n = *args.get_one::<usize>("n").unwrap();
    if n == 0 {
        bail!("-n must be at least 1");
    }
    let prompts: Vec<String> = args.get_many::<String>("prompt").map(|p| p.cloned().collect()).unwrap_or_else(|| vec![String::new()]);
    let params = SamplingParams {
        max_tokens: *args.get_one::<usize>("max-tokens").unwrap(),
        temperature: *args.get_one::<f64>("temperature").unwrap(),
        top_k: *args.get_one::<usize>("top-k").unwrap(),
        top_p: *args.get_one::<f64>("top-p").unwrap(),
        stop: args.get_many::<String>("stop").map(|s| s.cloned().collect()).unwrap_or_default(),
        seed: *args.get_one::<u64>("seed").unwrap(),
        ignore_eot: args.get_flag("ignore-eot"),
    };
    params.validate().map_err(|e| anyhow::anyhow!("--{}", e.replace('_', "-")))?;
    let model = open_model(args)?;
    let mut requests = Vec::new();
    for p in &prompts {
        let ids = model.encode(p);
        for j in 0..n {
            let r = GenRequest { prompt: ids.clone(), params: SamplingParams { seed: params.seed.wrapping_add(j as u64), ..params.clone() } };
            model.check_request(&r).map_err(|e| anyhow::anyhow!("--{e}"))?;
            requests.push(r);
        }
    }
    let opts = crate::generate::DecodeOptions { kv_cache: !args.get_flag("no-kv-cache") };
    let started = std::time::Instant::now();
    let out = model.generate_with(&requests, opts, &mut |_| crate::generate::Flow::Continue)?;
    let seconds = started.elapsed().as_secs_f64();
    let generated: usize = out.iter().map(|c| c.tokens.len()).sum();
    for (k, c) in out.iter().enumerate() {
        let (prompt, j) = (&prompts[k / n], k % n);
        if args.get_flag("json") {
            let line = serde_json::json!({
                "prompt": prompt, "sample": j, "seed": requests[k].params.seed, "text": c.text, "tokens": c.tokens,
                "token_logprobs": c.token_logprobs, "finish_reason": c.finish_reason.as_str(),
            });
            println!("{line}");
        } else {
            println!("--- sample {j} of {:?} (seed {}, {} tokens, {})", prompt, requests[k].params.seed, c.tokens.len(), c.finish_reason.as_str());
            println!("{prompt}{}", c.text);
        }
    }
    eprintln!("{} sample(s), {generated} tokens in {seconds:.2} s ({:.0} tokens/s) from {} at step {}", out.len(), generated as f64 / seconds.max(1e-9), model.run_id, model.step);
    Ok(())
}
