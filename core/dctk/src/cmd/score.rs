//! `dctk score runs/<id> --prompt … --continuation …`: teacher-forced log-probabilities of
//! a continuation given a prompt, per token and in total ([`crate::generate::decode::score`]).
use anyhow::{bail, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::args::{model_args, open_model};

pub fn cli() -> Command {
    model_args(Command::new("score").about("Log-probabilities of a continuation given a prompt under a run's model"))
        .arg(Arg::new("prompt").long("prompt").short('p').default_value("").help("The context (empty = the start of a document)"))
        .arg(Arg::new("continuation").long("continuation").short('c').required(true).help("The text to score"))
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("One JSON object on stdout"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let model = open_model(args)?;
    let prompt = args.get_one::<String>("prompt").unwrap();
    let continuation = args.get_one::<String>("continuation").unwrap();
    let p = model.encode(prompt);
    let c = model.encode(continuation);
    if c.is_empty() {
        bail!("--continuation: the text has no tokens to score");
    }
    let scores = model.score(&p, &c)?;
    let total: f64 = scores.iter().map(|&s| f64::from(s)).sum();
    let pieces: Vec<String> = c.iter().map(|&t| model.decode(&[t])).collect::<Result<_>>()?;
    if args.get_flag("json") {
        let line = serde_json::json!({
            "prompt": prompt, "continuation": continuation, "tokens": c, "token_strings": pieces,
            "token_logprobs": scores, "sum_logprob": total, "mean_logprob": total / scores.len() as f64,
        });
        println!("{line}");
    } else {
        for ((t, piece), s) in c.iter().zip(&pieces).zip(&scores) {
            println!("{t:>7} {s:>10.4}  {piece:?}");
        }
        println!("sum log p = {total:.4} over {} tokens (mean {:.4}, perplexity {:.2})", scores.len(), total / scores.len() as f64, (-total / scores.len() as f64).exp());
    }
    Ok(())
}
