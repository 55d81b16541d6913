//! `dctk data stats` and Rhai `corpus_stats`: token counts and the entropy proxies of every
//! domain of a corpus (SE, JE, CE from `dctk_data::entropy`; the von Neumann entropy's
//! eigenvalues here, with libtorch's `eigvalsh` in f64), and mixtures made from a proxy.
//!
//! The proxies are those of BiMix (Ge et al. 2024, arXiv 2405.14908); CE is computed exactly as
//! the authors' `collect_ce.py`; VNE is this project's definition (see `dctk_data::entropy`).
use anyhow::{bail, Result};
use dctk_data::{domain_entropy, proxy_mixture, von_neumann_entropy, Corpus, DomainEntropy, EntropyOptions, Normalisation, Proxy};
use serde::Serialize;
#[cfg(feature = "torch")]
use tch::{Kind, Tensor};

/// One domain's statistics, as printed and returned to scripts.
#[derive(Debug, Clone, Serialize)]
pub struct DomainStats {
    #[serde(flatten)]
    pub entropy: DomainEntropy,
    /// VNE: the von Neumann entropy of the bucketed continuation density matrix.
    pub von_neumann: f64,
    /// The number of VNE buckets with a token of their own.
    pub vne_top_k: usize,
    /// Seconds the domain took.
    pub seconds: f64,
}

impl DomainStats {
    /// The value of one proxy.
    pub fn proxy(&self, proxy: Proxy) -> f64 {
        match proxy {
            Proxy::Se => self.entropy.shannon,
            Proxy::Je => self.entropy.joint,
            Proxy::Ce => self.entropy.conditional,
            Proxy::Vne => self.von_neumann,
        }
    }
}

/// The statistics of the named domains (all when `domains` is empty), in corpus order.
pub fn corpus_stats(corpus: &Corpus, domains: &[String], opts: &EntropyOptions) -> Result<Vec<DomainStats>> {
    for d in domains {
        if corpus.domain(d).is_err() {
            bail!("{}: no domain {d:?} (domains: {})", corpus.dir.display(), corpus.domain_names().join(", "));
        }
    }
    let vocab = corpus.vocab_size() + corpus.special_tokens().len() as u32;
    let mut out = Vec::new();
    for d in corpus.domains() {
        if !domains.is_empty() && !domains.contains(&d.name) {
            continue;
        }
        let start = std::time::Instant::now();
        let entropy = domain_entropy(d, vocab, opts).map_err(|e| anyhow::anyhow!("{}: {e}", corpus.dir.display()))?;
        let von_neumann = vne_of(&entropy)?;
        out.push(DomainStats { vne_top_k: entropy.vne_tokens.len(), entropy, von_neumann, seconds: start.elapsed().as_secs_f64() });
    }
    Ok(out)
}

/// S(ρ) from the eigenvalues of the bucketed density matrix (symmetric, so `eigvalsh`).
#[cfg(feature = "torch")]
fn vne_of(e: &DomainEntropy) -> Result<f64> {
    if e.bigrams == 0 {
        return Ok(0.0);
    }
    let dim = e.vne_dim() as i64;
    let rho = Tensor::from_slice(&e.vne_density()).to_kind(Kind::Double).view([dim, dim]);
    let eigenvalues: Vec<f64> = Vec::try_from(rho.linalg_eigvalsh("L")).unwrap_or_default();
    Ok(von_neumann_entropy(&eigenvalues))
}

/// The libtorch-free build has no eigensolver: the command goes to `dctk-torch`.
#[cfg(not(feature = "torch"))]
fn vne_of(e: &DomainEntropy) -> Result<f64> {
    if e.bigrams == 0 {
        return Ok(0.0);
    }
    Err(crate::env::needs_torch("the von Neumann entropy (its eigenvalues come from libtorch)"))
}

/// Proportions over `stats`' domains from one proxy.
pub fn mixture_of(stats: &[DomainStats], proxy: Proxy, norm: Normalisation) -> Result<Vec<(String, f64)>> {
    let values: Vec<f64> = stats.iter().map(|s| s.proxy(proxy)).collect();
    let r = proxy_mixture(&values, norm).map_err(anyhow::Error::msg)?;
    Ok(stats.iter().map(|s| s.entropy.domain.clone()).zip(r).collect())
}

/// Keys of Rhai `corpus_stats`.
pub const STATS_KEYS: &[&str] = &["corpus", "domains", "split", "vne_top_k", "memory_mb", "threads", "mixture", "normalise"];

/// Rhai `corpus_stats(#{ corpus, domains, split, vne_top_k, memory_mb, threads, mixture,
/// normalise })` over an opened corpus: `#{ corpus, split, domains: [#{domain, documents,
/// tokens, bigrams, distinct_tokens, distinct_bigrams, shannon, joint, conditional,
/// von_neumann, ...}], mixture: #{domain: proportion} }` (`mixture` with `mixture` and
/// `normalise` given, as `dctk data stats`).
pub fn stats_from_script(corpus: &Corpus, settings: &serde_json::Value) -> Result<serde_json::Value> {
    let map = settings.as_object().ok_or_else(|| anyhow::anyhow!("expected a map"))?;
    for k in map.keys() {
        if !STATS_KEYS.contains(&k.as_str()) {
            bail!("{}", crate::keys::unknown_key("", k, STATS_KEYS));
        }
    }
    let text = |k: &str| -> Result<Option<String>> {
        match map.get(k) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => bail!("key \"{k}\" must be a string, got {v}"),
        }
    };
    let count = |k: &str, default: u64| -> Result<u64> {
        match map.get(k) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| anyhow::anyhow!("key \"{k}\" must be a non-negative integer, got {v}")),
        }
    };
    let defaults = EntropyOptions::default();
    let opts = EntropyOptions {
        split: text("split")?.map(|s| s.parse()).transpose().map_err(|e: String| anyhow::anyhow!("key \"split\": {e}"))?.unwrap_or(defaults.split),
        vne_top_k: count("vne_top_k", defaults.vne_top_k as u64)? as usize,
        memory_bytes: count("memory_mb", defaults.memory_bytes >> 20)?.max(1) << 20,
        threads: count("threads", 0)? as usize,
    };
    let domains: Vec<String> = match map.get("domains") {
        None => Vec::new(),
        Some(serde_json::Value::Array(a)) => a.iter().map(|d| d.as_str().map(String::from).ok_or_else(|| anyhow::anyhow!("key \"domains\": {d} is not a string"))).collect::<Result<_>>()?,
        Some(v) => bail!("key \"domains\" must be an array of domain names, got {v}"),
    };
    let mixture = match (text("mixture")?, text("normalise")?) {
        (Some(p), Some(n)) => Some((
            p.parse::<Proxy>().map_err(|e| anyhow::anyhow!("key \"mixture\": {e}"))?,
            n.parse::<Normalisation>().map_err(|e| anyhow::anyhow!("key \"normalise\": {e}"))?,
        )),
        (Some(_), None) => bail!("key \"mixture\" needs \"normalise\": \"proportional\" or \"softmax[:TEMPERATURE]\" (BiMix's release does not say how its entropies became proportions)"),
        (None, Some(_)) => bail!("key \"normalise\" needs \"mixture\": \"se\", \"je\", \"ce\" or \"vne\""),
        (None, None) => None,
    };
    let stats = corpus_stats(corpus, &domains, &opts)?;
    let mut out = serde_json::json!({ "corpus": corpus.dir.display().to_string(), "split": opts.split, "domains": stats });
    if let Some((p, n)) = mixture {
        let mix: serde_json::Map<String, serde_json::Value> = mixture_of(&stats, p, n)?.into_iter().map(|(d, r)| (d, r.into())).collect();
        out["mixture"] = mix.into();
    }
    Ok(out)
}
