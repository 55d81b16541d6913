//! Entropy proxies of a domain's token stream, the inputs of BiMix's entropy-driven mixtures
//! (Ge et al. 2024, "BiMix: A Bivariate Data Mixing Law for Language Model Pretraining",
//! arXiv 2405.14908, §4 "Entropy proxies"): unigram Shannon entropy (SE), bigram joint entropy
//! (JE), bigram conditional entropy (CE) and a von Neumann entropy (VNE), all in nats.
//!
//! * **SE** = −Σ_w p(w) ln p(w), p(w) = c(w) / N over the domain's tokens.
//! * **JE** = −Σ_{(a,b)} p(a,b) ln p(a,b), p(a,b) = c(a,b) / N₂ over adjacent pairs.
//! * **CE** = Σ_{(a,b)} p(a,b) · (−ln p(b | a)), p(b | a) = c(a,b) / c(a·), c(a·) the number of
//!   bigrams starting with a — exactly the authors' `collect_ce.py` (bigram counts, prefix
//!   counts from the same bigrams, natural log).
//! * **VNE** is *this project's definition* (the paper's is not in its release): the von Neumann
//!   entropy S(ρ) = −tr ρ ln ρ of the density matrix ρ = Σ_a p(a) |ψ_a⟩⟨ψ_a| of the ensemble of
//!   "continuation states" |ψ_a⟩ = Σ_b √p(b | a) |b⟩, weighted by the prefixes' frequencies.
//!   Then ρ_bc = Σ_a √(p(a,b) p(a,c)), tr ρ = 1, and S(ρ) is the Holevo quantity of the
//!   ensemble: 0 when every prefix is followed by the same distribution (an i.i.d. source),
//!   ln k when k equally frequent prefixes have disjoint continuations, and at most SE of the
//!   prefixes. It measures how much the next token depends on the previous one. To keep ρ
//!   small, tokens are bucketed: the domain's `vne_top_k` most frequent tokens (ties by id)
//!   keep a bucket each and all others share one, so ρ is (k+1)×(k+1); this module returns the
//!   bucketed bigram counts and [`von_neumann_entropy`] needs the eigenvalues of ρ, which the
//!   host computes (`dctk` uses libtorch's `eigvalsh`).
//!
//! Bigrams never cross a document boundary: a document of n tokens gives n − 1 bigrams.
//!
//! **Streaming, bounded memory.** Unigram and prefix counts are dense arrays of the vocabulary's
//! size. Bigram counts are hashed, which needs memory per distinct bigram; to keep memory flat
//! in corpus size the bigram space is split by prefix into `partitions` (enough that the worst
//! case, every bigram distinct, fits `memory_bytes`), each counted in its own pass over the
//! memory-mapped shards; `threads` partitions run at once. A prefix's whole row lands in one
//! partition, so each partition's Σ c ln c is final. Sums of c ln c are accumulated in fixed
//! point (2⁻³² nats per unit, i128), so the result is bit-identical for any thread count and
//! partitioning.
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::corpus::{DocRef, Domain};
use crate::error::{DataError, Result};

/// Settings of [`domain_entropy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyOptions {
    /// Which documents: `train` (the default: what a study trains on), `val` or `all`.
    pub split: EntropySplit,
    /// Tokens with a bucket of their own in the VNE density matrix (the rest share one).
    pub vne_top_k: usize,
    /// Memory for the bigram tables, bytes (the worst case: every bigram distinct).
    pub memory_bytes: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for EntropyOptions {
    fn default() -> Self {
        Self { split: EntropySplit::Train, vne_top_k: 1024, memory_bytes: 512 << 20, threads: 0 }
    }
}

/// The documents an entropy is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropySplit {
    Train,
    Val,
    All,
}

impl std::str::FromStr for EntropySplit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(Self::Train),
            "val" => Ok(Self::Val),
            "all" => Ok(Self::All),
            _ => Err(format!("unknown split {s:?}: expected train, val or all")),
        }
    }
}

/// Token statistics and the entropy proxies of one domain (nats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEntropy {
    pub domain: String,
    pub documents: u64,
    pub tokens: u64,
    pub bigrams: u64,
    pub distinct_tokens: u64,
    pub distinct_bigrams: u64,
    /// SE: unigram Shannon entropy.
    pub shannon: f64,
    /// JE: bigram joint entropy.
    pub joint: f64,
    /// CE: bigram conditional entropy, as `collect_ce.py`.
    pub conditional: f64,
    /// Passes over the shards the bigram counts took.
    pub partitions: usize,
    /// The VNE buckets: the `k` most frequent ids, in bucket order (the shared bucket is last).
    pub vne_tokens: Vec<u32>,
    /// Bigram counts between buckets, row-major (k+1)×(k+1): row = prefix bucket.
    #[serde(skip)]
    pub vne_counts: Vec<u64>,
}

impl DomainEntropy {
    /// The size of the VNE density matrix: k + 1.
    pub fn vne_dim(&self) -> usize {
        self.vne_tokens.len() + 1
    }

    /// ρ = Σ_a √(c(a,b) c(a,c)) / N₂ of the bucketed counts, row-major, dim × dim (see the
    /// module docs); all zeros for a domain without bigrams.
    pub fn vne_density(&self) -> Vec<f64> {
        let dim = self.vne_dim();
        let mut rho = vec![0.0; dim * dim];
        if self.bigrams == 0 {
            return rho;
        }
        let scale = 1.0 / self.bigrams as f64;
        let mut row = vec![0.0; dim];
        for a in 0..dim {
            let counts = &self.vne_counts[a * dim..(a + 1) * dim];
            let nonzero: Vec<usize> = (0..dim).filter(|&b| counts[b] > 0).collect();
            for &b in &nonzero {
                row[b] = (counts[b] as f64).sqrt();
            }
            for &b in &nonzero {
                for &c in &nonzero {
                    rho[b * dim + c] += row[b] * row[c] * scale;
                }
            }
        }
        rho
    }
}

/// −Σ λ ln λ over the eigenvalues of a density matrix (those ≤ 1e-15, rounding noise of a
/// positive semi-definite matrix, count as 0).
pub fn von_neumann_entropy(eigenvalues: &[f64]) -> f64 {
    eigenvalues.iter().filter(|&&l| l > 1e-15).map(|&l| -l * l.ln()).sum()
}

/// Fixed-point units per nat of the c ln c sums (see the module docs).
const FIXED_POINT: f64 = 4294967296.0;

fn c_ln_c(c: u64) -> i128 {
    if c <= 1 {
        0
    } else {
        let c = c as f64;
        (c * c.ln() * FIXED_POINT).round() as i128
    }
}

/// H = ln N − (Σ c ln c) / N from the fixed-point sum.
fn entropy_from(total: u64, sum_c_ln_c: i128) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    n.ln() - (sum_c_ln_c as f64 / FIXED_POINT) / n
}

/// The partition of a prefix id (a multiplicative hash, so consecutive ids spread).
#[inline]
fn partition_of(prefix: u32, partitions: usize) -> usize {
    ((prefix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % partitions
}

/// Bytes per hashed bigram in the worst case (key + count + control byte, at hashbrown's
/// 7/8 load factor and its doubling: up to ~2× the entries).
const BYTES_PER_BIGRAM: u64 = 40;

/// The entropy proxies of `domain` (see the module docs).
pub fn domain_entropy(domain: &Domain, vocab_size: u32, opts: &EntropyOptions) -> Result<DomainEntropy> {
    let docs: Vec<DocRef> = match opts.split {
        EntropySplit::Train => domain.train_docs(),
        EntropySplit::Val => domain.val_docs(),
        EntropySplit::All => domain.docs().to_vec(),
    };
    let store = domain.store();
    let read = |d: &DocRef, buf: &mut Vec<u32>| {
        buf.clear();
        store.extend(d.shard, d.start, d.tokens as usize, buf);
    };
    entropy_of(&domain.name, &docs, read, vocab_size, opts)
}

/// The entropy proxies of documents given as token sequences (the same computation as
/// [`domain_entropy`], for tests and callers with tokens in memory).
pub fn sequences_entropy(name: &str, docs: &[Vec<u32>], vocab_size: u32, opts: &EntropyOptions) -> Result<DomainEntropy> {
    let read = |d: &Vec<u32>, buf: &mut Vec<u32>| {
        buf.clear();
        buf.extend_from_slice(d);
    };
    entropy_of(name, docs, read, vocab_size, opts)
}

fn entropy_of<D: Sync>(
    name: &str,
    docs: &[D],
    read: impl Fn(&D, &mut Vec<u32>) + Sync,
    vocab_size: u32,
    opts: &EntropyOptions,
) -> Result<DomainEntropy> {
    let vocab = vocab_size as usize;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| DataError::Config(format!("entropy: thread pool: {e}")))?;
    let check = |id: u32| -> Result<()> {
        if id as usize >= vocab {
            return Err(DataError::Config(format!("domain {name:?}: token id {id} is outside the vocabulary ({vocab_size} ids)")));
        }
        Ok(())
    };
    pool.install(|| {
        // Pass 1: unigram and prefix counts (dense), per chunk of documents, then summed.
        let chunk = docs.len().div_ceil(rayon::current_num_threads() * 4).max(1);
        let (unigrams, prefixes) = docs
            .par_chunks(chunk)
            .map(|part| -> Result<(Vec<u64>, Vec<u64>)> {
                let (mut uni, mut pre) = (vec![0u64; vocab], vec![0u64; vocab]);
                let mut buf = Vec::new();
                for d in part {
                    read(d, &mut buf);
                    for &id in &buf {
                        check(id)?;
                        uni[id as usize] += 1;
                    }
                    for &id in buf.iter().take(buf.len().saturating_sub(1)) {
                        pre[id as usize] += 1;
                    }
                }
                Ok((uni, pre))
            })
            .try_reduce(
                || (vec![0u64; vocab], vec![0u64; vocab]),
                |(mut u, mut p), (u2, p2)| {
                    u.iter_mut().zip(&u2).for_each(|(a, b)| *a += b);
                    p.iter_mut().zip(&p2).for_each(|(a, b)| *a += b);
                    Ok((u, p))
                },
            )?;
        let tokens: u64 = unigrams.iter().sum();
        let bigrams: u64 = prefixes.iter().sum();
        let distinct_tokens = unigrams.iter().filter(|&&c| c > 0).count() as u64;
        let shannon = entropy_from(tokens, unigrams.iter().map(|&c| c_ln_c(c)).sum());
        let prefix_sum: i128 = prefixes.iter().map(|&c| c_ln_c(c)).sum();

        // The VNE buckets: the k most frequent ids (ties by id), the rest in bucket k.
        let mut order: Vec<u32> = (0..vocab_size).filter(|&i| unigrams[i as usize] > 0).collect();
        order.sort_by(|&a, &b| unigrams[b as usize].cmp(&unigrams[a as usize]).then(a.cmp(&b)));
        order.truncate(opts.vne_top_k);
        let k = order.len();
        let mut bucket = vec![k as u32; vocab];
        for (i, &id) in order.iter().enumerate() {
            bucket[id as usize] = i as u32;
        }

        // Pass 2..: bigram counts, partitioned by prefix; partition 0 also counts the buckets.
        let worst = bigrams.saturating_mul(BYTES_PER_BIGRAM);
        let threads = rayon::current_num_threads().max(1);
        let partitions = (worst.div_ceil(opts.memory_bytes.max(1)) as usize).max(1).max(threads.min(bigrams.max(1) as usize));
        let dim = k + 1;
        let results: Vec<(i128, u64, Option<Vec<u64>>)> = (0..partitions)
            .into_par_iter()
            .map(|p| {
                let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
                let mut vne = (p == 0).then(|| vec![0u64; dim * dim]);
                let mut buf = Vec::new();
                for d in docs {
                    read(d, &mut buf);
                    for w in buf.windows(2) {
                        if let Some(m) = vne.as_mut() {
                            m[bucket[w[0] as usize] as usize * dim + bucket[w[1] as usize] as usize] += 1;
                        }
                        if partition_of(w[0], partitions) == p {
                            *counts.entry(((w[0] as u64) << 32) | w[1] as u64).or_insert(0) += 1;
                        }
                    }
                }
                let sum: i128 = counts.values().map(|&c| c_ln_c(c)).sum();
                (sum, counts.len() as u64, vne)
            })
            .collect();
        let joint_sum: i128 = results.iter().map(|r| r.0).sum();
        let distinct_bigrams = results.iter().map(|r| r.1).sum();
        let vne_counts = results.into_iter().find_map(|r| r.2).unwrap_or_else(|| vec![0; dim * dim]);
        let joint = entropy_from(bigrams, joint_sum);
        let conditional = if bigrams == 0 { 0.0 } else { ((prefix_sum - joint_sum) as f64 / FIXED_POINT) / bigrams as f64 };
        Ok(DomainEntropy {
            domain: name.to_string(),
            documents: docs.len() as u64,
            tokens,
            bigrams,
            distinct_tokens,
            distinct_bigrams,
            shannon,
            joint,
            conditional,
            partitions,
            vne_tokens: order,
            vne_counts,
        })
    })
}

/// Which proxy a mixture is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    Se,
    Je,
    Ce,
    Vne,
}

impl std::str::FromStr for Proxy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "se" => Ok(Self::Se),
            "je" => Ok(Self::Je),
            "ce" => Ok(Self::Ce),
            "vne" => Ok(Self::Vne),
            _ => Err(format!("unknown entropy proxy {s:?}: expected se, je, ce or vne")),
        }
    }
}

/// How proxy values become proportions. BiMix's release stores its entropy mixtures but not
/// the mapping (their ln-ratios suggest a softmax, unverified), so the choice is explicit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalisation {
    /// r_i = H_i / Σ_j H_j.
    Proportional,
    /// r_i = exp(H_i / τ) / Σ_j exp(H_j / τ).
    Softmax { temperature: f64 },
}

impl std::str::FromStr for Normalisation {
    type Err = String;
    /// `proportional`, `softmax` (τ = 1) or `softmax:τ`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "proportional" => Ok(Self::Proportional),
            None if s == "softmax" => Ok(Self::Softmax { temperature: 1.0 }),
            Some(("softmax", t)) => match t.parse::<f64>() {
                Ok(t) if t > 0.0 && t.is_finite() => Ok(Self::Softmax { temperature: t }),
                _ => Err(format!("softmax temperature {t:?} must be a positive number")),
            },
            _ => Err(format!("unknown normalisation {s:?}: expected proportional, softmax or softmax:TEMPERATURE")),
        }
    }
}

/// Proportions (summing to 1) from one proxy value per domain.
pub fn proxy_mixture(values: &[f64], norm: Normalisation) -> std::result::Result<Vec<f64>, String> {
    if values.is_empty() {
        return Err("a mixture needs at least one domain".into());
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(format!("proxy value {v} is not finite"));
    }
    let weights: Vec<f64> = match norm {
        Normalisation::Proportional => {
            if let Some(v) = values.iter().find(|&&v| v < 0.0) {
                return Err(format!("proportional normalisation needs non-negative values, got {v}"));
            }
            values.to_vec()
        }
        Normalisation::Softmax { temperature } => {
            let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            values.iter().map(|v| ((v - max) / temperature).exp()).collect()
        }
    };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err("every proxy value is 0: no mixture (a domain of single-token documents has no bigrams)".into());
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(threads: usize, memory_bytes: u64) -> EntropyOptions {
        EntropyOptions { split: EntropySplit::All, vne_top_k: 8, memory_bytes, threads }
    }

    #[test]
    fn hand_computed_se_je_ce() {
        // Tokens 0 1 0 1 | 0 2: unigrams 0:3, 1:2, 2:1 (N = 6); bigrams (0,1):2, (1,0):1,
        // (0,2):1 (N₂ = 4); prefixes 0:3, 1:1.
        let docs = vec![vec![0, 1, 0, 1], vec![0, 2]];
        let e = sequences_entropy("t", &docs, 3, &opts(1, 1 << 20)).unwrap();
        let se = -(0.5f64 * 0.5f64.ln() + (1.0 / 3.0) * (1.0f64 / 3.0).ln() + (1.0 / 6.0) * (1.0f64 / 6.0).ln());
        let je = -(0.5f64 * 0.5f64.ln() + 2.0 * 0.25 * 0.25f64.ln());
        // CE = Σ p(a,b) (−ln p(b|a)): (0,1): 0.5·−ln(2/3), (1,0): 0.25·−ln 1, (0,2): 0.25·−ln(1/3).
        let ce = 0.5 * -(2.0f64 / 3.0).ln() + 0.25 * -(1.0f64 / 3.0).ln();
        assert_eq!((e.tokens, e.bigrams, e.distinct_tokens, e.distinct_bigrams, e.documents), (6, 4, 3, 3, 2));
        for (got, want) in [(e.shannon, se), (e.joint, je), (e.conditional, ce)] {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn identical_for_any_threads_and_partitions() {
        let docs: Vec<Vec<u32>> = (0..200u32).map(|d| (0..(d % 37 + 1)).map(|i| (i * 7 + d * 13) % 101).collect()).collect();
        let a = sequences_entropy("t", &docs, 101, &opts(1, 1 << 30)).unwrap();
        let b = sequences_entropy("t", &docs, 101, &opts(3, 64)).unwrap();
        assert!(b.partitions > a.partitions);
        assert_eq!((a.shannon.to_bits(), a.joint.to_bits(), a.conditional.to_bits()), (b.shannon.to_bits(), b.joint.to_bits(), b.conditional.to_bits()));
        assert_eq!((a.distinct_bigrams, a.vne_counts.clone()), (b.distinct_bigrams, b.vne_counts.clone()));
    }

    #[test]
    fn vne_density_of_hand_cases() {
        // Two equally frequent prefixes with disjoint continuations: 0→1, 2→3, repeated.
        // ρ = diag over continuation buckets of 1/2, 1/2 → S = ln 2 (eigenvalues are the
        // diagonal here).
        let docs = vec![vec![0, 1], vec![2, 3], vec![0, 1], vec![2, 3]];
        let e = sequences_entropy("t", &docs, 4, &opts(1, 1 << 20)).unwrap();
        let rho = e.vne_density();
        let dim = e.vne_dim();
        let trace: f64 = (0..dim).map(|i| rho[i * dim + i]).sum();
        assert!((trace - 1.0).abs() < 1e-12);
        let off: f64 = (0..dim).flat_map(|i| (0..dim).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| rho[i * dim + j].abs()).sum();
        assert!(off < 1e-12, "{rho:?}");
        let diag: Vec<f64> = (0..dim).map(|i| rho[i * dim + i]).collect();
        assert!((von_neumann_entropy(&diag) - 2f64.ln()).abs() < 1e-12);
        // Every prefix followed by the same distribution: ρ = |ψ⟩⟨ψ| is pure, S = 0. Prefixes
        // 0 and 1, each followed once by 2 and once by 3: ψ = (√½, √½) over {2, 3}.
        let docs = vec![vec![0, 2], vec![0, 3], vec![1, 2], vec![1, 3]];
        let e = sequences_entropy("t", &docs, 4, &opts(1, 1 << 20)).unwrap();
        let rho = e.vne_density();
        let dim = e.vne_dim();
        // Rank one: ρ = v vᵀ with ρ_bb = 1/2 on the two continuation buckets, so ρ_bc = 1/2 too.
        let nz: Vec<f64> = rho.iter().cloned().filter(|v| *v > 0.0).collect();
        assert_eq!(nz.len(), 4);
        assert!(nz.iter().all(|v| (v - 0.5).abs() < 1e-12), "{rho:?} (dim {dim})");
        assert_eq!(von_neumann_entropy(&[1.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn mixtures_from_proxies() {
        let r = proxy_mixture(&[1.0, 3.0], Normalisation::Proportional).unwrap();
        assert_eq!(r, vec![0.25, 0.75]);
        let r = proxy_mixture(&[0.0, 2f64.ln()], "softmax".parse().unwrap()).unwrap();
        assert!((r[0] - 1.0 / 3.0).abs() < 1e-12 && (r[1] - 2.0 / 3.0).abs() < 1e-12);
        let r = proxy_mixture(&[0.0, 2f64.ln()], "softmax:0.5".parse().unwrap()).unwrap();
        assert!((r[0] - 0.2).abs() < 1e-12);
        assert!("softmax:-1".parse::<Normalisation>().is_err());
        assert!(proxy_mixture(&[0.0, 0.0], Normalisation::Proportional).is_err());
    }

    #[test]
    fn out_of_vocabulary_ids_are_an_error_naming_the_domain() {
        let err = sequences_entropy("web", &[vec![0, 9]], 4, &opts(1, 1 << 20)).unwrap_err().to_string();
        assert!(err.contains("\"web\"") && err.contains("token id 9"), "{err}");
    }
}
