//! `dctk plugins list|info|check`: what plugins the search path holds (plus the
//! built-in law forms of `dctk-laws`), everything about one of them, and a smoke
//! test that instantiates plugins with their defaults and calls them once. A
//! library that fails to load or a plugin that fails its check is reported and
//! the command goes on with the others.
use anyhow::{bail, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::sync::Arc;

use crate::plugin::{self, load_augmenter, load_law, load_regularizers, MicroBatch, Plugin, RegularizerRequest};

pub fn cli() -> Command {
    Command::new("plugins")
        .about("List, describe and smoke-test plugins (regularizers, augmenters, law forms)")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(Command::new("list").about("Plugins on the search path, the built-in law forms, and libraries that did not load"))
        .subcommand(
            Command::new("info")
                .about("Kind, version, settings (types, defaults), equation, file and hash of one plugin or built-in law")
                .arg(Arg::new("name").required(true).help("plugin name, built-in law name, or a path to a library")),
        )
        .subcommand(
            Command::new("check")
                .about("Instantiate plugins with default settings and call them once on a toy model")
                .arg(Arg::new("names").action(ArgAction::Append).help("plugin names or library paths (default: every plugin found)")),
        )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    match args.subcommand() {
        Some(("list", _)) => list(),
        Some(("info", a)) => info(a.get_one::<String>("name").expect("required")),
        Some(("check", a)) => {
            let names: Vec<String> = a.get_many::<String>("names").map(|v| v.cloned().collect()).unwrap_or_default();
            check(&names)
        }
        _ => unreachable!("clap requires a known subcommand"),
    }
}

/// A built-in law by name (mixing_law needs a domain count; show it with 2).
fn builtin_law(name: &str) -> Option<Arc<dyn dctk_laws::LawForm>> {
    dctk_laws::builtin(name, &dctk_laws::LawOptions::default())
        .or_else(|_| dctk_laws::builtin(name, &dctk_laws::LawOptions { domains: Some(2), ..Default::default() }))
        .ok()
}

fn list() -> Result<()> {
    let d = plugin::discover();
    println!("{:<14} {:<12} {:<9} SOURCE", "NAME", "KIND", "VERSION");
    for p in &d.plugins {
        println!("{:<14} {:<12} {:<9} {}", p.name, p.kind_names().join(","), p.version, p.file.display());
    }
    for name in dctk_laws::BUILTIN_LAWS {
        println!("{:<14} {:<12} {:<9} built-in (dctk-laws)", name, "law", crate::env::DCTK_VERSION);
    }
    for p in &d.shadowed {
        println!("(shadowed: `{}` in {}, an earlier directory of the search path wins)", p.name, p.file.display());
    }
    if !d.errors.is_empty() {
        println!("\nlibraries that did not load:");
        for (f, e) in &d.errors {
            println!("  {}: {e}", f.display());
        }
    }
    let path: Vec<String> = plugin::search_path().iter().map(|p| p.display().to_string()).collect();
    println!("\nsearch path: {}", path.join(":"));
    Ok(())
}

/// A plugin named on the command line: a plugin name (the search path), or the path of a
/// library file, which the user thereby declares for this process.
fn named(arg: &str) -> Result<Arc<Plugin>> {
    let path = std::path::Path::new(arg);
    if arg.contains(std::path::MAIN_SEPARATOR) || path.extension().is_some() {
        return plugin::declare(path);
    }
    plugin::find(arg)
}

fn fmt_bound(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| x.to_string())
}

fn info(name: &str) -> Result<()> {
    let p = match named(name) {
        Ok(p) => p,
        Err(e) => {
            if let Some(law) = builtin_law(name) {
                return builtin_info(&*law);
            }
            return Err(e);
        }
    };
    let b = &p.desc.build;
    println!("name         {}", p.name);
    println!("kind         {}", p.kind_names().join(", "));
    println!("version      {}", p.version);
    if !p.description.is_empty() {
        println!("description  {}", p.description);
    }
    println!("file         {}", p.file.display());
    println!("blake3       {}", p.blake3);
    unsafe {
        println!(
            "built with   dctk-plugin-sdk {}, tch {}, libtorch {}, {}",
            b.sdk.to_string_lossy(),
            b.tch.to_string_lossy(),
            b.libtorch.to_string_lossy(),
            b.rustc.to_string_lossy()
        );
    }
    for kind in ["regularizer", "augmenter"] {
        if !p.kind_names().contains(&kind) {
            continue;
        }
        let settings = p.settings(kind)?;
        println!("{kind} settings:");
        if settings.is_empty() {
            println!("  (none)");
        }
        for s in settings {
            let range =
                if s.min.is_some() || s.max.is_some() { format!("[{}, {}]", fmt_bound(s.min), fmt_bound(s.max)) } else { String::new() };
            println!("  {:<12} {:<7} default {:<8} {:<16} {}", s.key, s.ty.name(), s.default.to_string(), range, s.doc);
        }
    }
    if p.law().is_some() {
        let law = load_law(&p.name)?;
        law_details(&*law, Some(dctk_laws::LawForm::default_grid(&*law, &dctk_laws::Inputs::new(vec![], vec![]), &[]).len()));
    }
    Ok(())
}

fn law_details(law: &dyn dctk_laws::LawForm, grid: Option<usize>) {
    println!("equation     {}", law.equation());
    let cite = law.citation();
    if !cite.is_empty() {
        println!("citation     {cite}");
    }
    println!("inputs       {}", law.inputs().join(", "));
    println!("parameters:");
    for s in law.params() {
        println!("  {:<10} [{}, {}]", s.name, s.lower, s.upper);
    }
    if let Some(n) = grid {
        println!("default grid {n} starting points");
    }
}

fn builtin_info(law: &dyn dctk_laws::LawForm) -> Result<()> {
    println!("name         {}", law.name());
    println!("kind         law");
    println!("version      {} (built into dctk)", crate::env::DCTK_VERSION);
    println!("file         built-in (dctk-laws crate, core/laws)");
    law_details(law, None);
    Ok(())
}

/// Smoke-test one plugin; returns a one-line summary of what it did.
fn check_one(p: &Arc<Plugin>) -> Result<String> {
    // By name: `find` returns `p` itself (declared, or first on the search path).
    let target = p.name.clone();
    let mut done = Vec::new();
    if p.regularizer().is_some() {
        let mut set = load_regularizers(&[RegularizerRequest::new(&target, serde_json::Value::Null)], 0)?;
        let base = 60;
        let vocab = base + set.extra_vocab_tokens();
        let x = tch::Tensor::arange(4 * 32, (tch::Kind::Int64, tch::Device::Cpu)).remainder(base).view([4, 32]);
        let y = (&x + 1).remainder(base);
        let w = tch::Tensor::randn([vocab, vocab], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut forward = |ids: &tch::Tensor| w.index_select(0, &ids.view([-1])).view([ids.size()[0], ids.size()[1], vocab]);
        let (x, y) = set.transform_batch(0, 0, base, &x, &y)?;
        let logits = forward(&x);
        let mb = MicroBatch { step: 0, micro: 0, base_vocab: base, inputs: &x, targets: &y, hidden: Some(&logits) };
        let aux = set.aux_loss(&crate::plugin::LogitsHead, &mb, &mut forward)?;
        if let Some(l) = &aux.loss {
            l.backward();
        }
        let m: Vec<String> = aux.metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
        done.push(format!("regularizer ok ({})", if m.is_empty() { "no metrics".into() } else { m.join(", ") }));
    }
    if p.augmenter().is_some() {
        let a = load_augmenter(&target, &serde_json::Value::Null)?;
        // plan → answers (an echo of each prompt, standing in for a generator) → assemble.
        let (mut requests, mut out) = (0, 0);
        for (index, text) in ["The first document.", "A second one."].into_iter().enumerate() {
            let doc = crate::generate::augment::SourceText { domain: "check", index, key: index as u64, text };
            let planned = a.plan(&doc)?;
            requests += planned.len();
            let answers: Vec<String> = planned.iter().map(|r| format!("{} ...", r.prompt)).collect();
            out += a.assemble(&doc, &answers.iter().map(String::as_str).collect::<Vec<_>>())?.len();
        }
        done.push(format!("augmenter ok (2 documents in, {requests} request(s), {out} out)"));
    }
    if p.law().is_some() {
        let law = load_law(&target)?;
        let grid = dctk_laws::LawForm::default_grid(&*law, &dctk_laws::Inputs::new(vec![], vec![]), &[]);
        let Some(start) = grid.first() else { bail!("law plugin `{}` has an empty default grid", p.name) };
        let names = dctk_laws::LawForm::inputs(&*law);
        let cols = names.iter().map(|_| vec![1.0e8, 1.0e9, 1.0e10]).collect();
        let inputs = dctk_laws::Inputs::new(names, cols);
        let mut out = vec![0.0; 3];
        law.try_predict(start, &inputs, &mut out)?;
        done.push(format!("law ok (prediction at the first grid point: {out:?})"));
    }
    Ok(done.join("; "))
}

fn check(names: &[String]) -> Result<()> {
    let mut targets: Vec<Result<Arc<Plugin>>> = Vec::new();
    if names.is_empty() {
        let d = plugin::discover();
        targets.extend(d.plugins.into_iter().map(Ok));
        targets.extend(d.errors.into_iter().map(|(f, e)| Err(anyhow::anyhow!("{}: {e}", f.display()))));
    } else {
        targets.extend(names.iter().map(|n| named(n)));
    }
    let mut failed = 0;
    for t in targets {
        match t.and_then(|p| check_one(&p).map(|s| (p, s))) {
            Ok((p, s)) => println!("ok      {}: {s}", p.name),
            Err(e) => {
                failed += 1;
                println!("FAILED  {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} plugin check(s) failed");
    }
    Ok(())
}
