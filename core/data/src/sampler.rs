//! The training sampler: serves a token budget from several domains in given proportions,
//! repeating each domain's unique subset as often as needed, with exact accounting.
//!
//! Why it is built this way:
//! * **Streams, not random offsets.** Each domain is an endless stream: epoch after epoch of
//!   its subset's documents, each followed by the separator, in an order reshuffled every epoch
//!   by a ChaCha8 RNG seeded from blake3(seed, domain, epoch). A sequence is the next
//!   `seq_len + 1` tokens of one domain's stream and advances it by `seq_len` (the extra token is
//!   the last target). So every served token is counted once, and "epochs" are exact:
//!   `tokens_served / epoch_tokens`. No silent repetition: nothing is served that is not counted.
//! * **Proportions by smooth weighted round-robin**, with integer weights (parts per 10⁹), not by
//!   random draws: after any number of sequences each domain's share is within one sequence of
//!   its target, and the choice is exactly reproducible. Weights may follow a schedule.
//! * **State is tiny and exact**: per domain (epoch, document position, offset, counters,
//!   round-robin credit). The shuffle RNG is re-derived from (seed, domain, epoch), so it needs no
//!   saved stream position. [`Sampler::restore`] refuses a state from a different configuration.
//! * **Synthetic data** is just another domain whose [`DomainKind`] is `Synthetic`; accounting
//!   splits served tokens into real and synthetic.

use std::sync::Arc;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::corpus::Subset;
use crate::error::{DataError, Result};
use crate::manifest::DomainKind;

/// What to do when a domain has served its allowed epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Exhaustion {
    /// Repeat the subset forever (new shuffle each epoch).
    #[default]
    Repeat,
    /// Serve at most this many epochs, then leave the mixture (the others' weights renormalise).
    StopAfterEpochs(u32),
}

/// A point of a proportion schedule: the weights (one per domain, any positive scale) at `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulePoint {
    pub step: u64,
    pub weights: Vec<f64>,
}

/// Domain proportions, constant or over steps (per domain, in the sampler's domain order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Proportions {
    Constant(Vec<f64>),
    /// Linear interpolation between points; constant before the first and after the last.
    Linear(Vec<SchedulePoint>),
    /// The weights of the last point whose `step` ≤ the current step (the first before it).
    Piecewise(Vec<SchedulePoint>),
}

impl Proportions {
    /// Weights at `step`, normalised to sum 1 (before exhausted domains are removed).
    pub fn at(&self, step: u64) -> Vec<f64> {
        let raw: Vec<f64> = match self {
            Proportions::Constant(w) => w.clone(),
            Proportions::Piecewise(pts) => {
                let i = pts.iter().rposition(|p| p.step <= step).unwrap_or(0);
                pts[i].weights.clone()
            }
            Proportions::Linear(pts) => {
                if step <= pts[0].step {
                    pts[0].weights.clone()
                } else if step >= pts[pts.len() - 1].step {
                    pts[pts.len() - 1].weights.clone()
                } else {
                    let i = pts.iter().rposition(|p| p.step <= step).unwrap_or(0);
                    let (a, b) = (&pts[i], &pts[i + 1]);
                    let t = (step - a.step) as f64 / (b.step - a.step) as f64;
                    a.weights
                        .iter()
                        .zip(&b.weights)
                        .map(|(x, y)| x + (y - x) * t)
                        .collect()
                }
            }
        };
        let s: f64 = raw.iter().sum();
        raw.iter().map(|w| w / s).collect()
    }

    fn validate(&self, n_domains: usize) -> Result<()> {
        let check = |w: &Vec<f64>| -> Result<()> {
            if w.len() != n_domains {
                return Err(DataError::Config(format!(
                    "{} weights for {n_domains} domains",
                    w.len()
                )));
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                return Err(DataError::Config(format!(
                    "weights must be finite, ≥ 0 and not all 0: {w:?}"
                )));
            }
            Ok(())
        };
        match self {
            Proportions::Constant(w) => check(w),
            Proportions::Linear(p) | Proportions::Piecewise(p) => {
                if p.is_empty() {
                    return Err(DataError::Config(
                        "a proportion schedule needs at least one point".into(),
                    ));
                }
                if p.windows(2).any(|w| w[0].step >= w[1].step) {
                    return Err(DataError::Config(
                        "schedule steps must increase strictly".into(),
                    ));
                }
                p.iter().try_for_each(|x| check(&x.weights))
            }
        }
    }
}

/// How documents are packed into sequences. Documents are always concatenated with the
/// separator after each; `cross_doc_attention = false` asks the trainer to mask attention
/// between documents using [`Batch::segment_ids`] (megadoc studies compare both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packing {
    pub cross_doc_attention: bool,
}

impl Default for Packing {
    fn default() -> Self {
        Self {
            cross_doc_attention: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub seq_len: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub proportions: Proportions,
    pub packing: Packing,
}

/// One domain of a mixture: its unique subset and its exhaustion policy.
#[derive(Debug, Clone)]
pub struct MixDomain {
    pub subset: Subset,
    pub exhaustion: Exhaustion,
}

/// A batch: `batch_size` rows of `seq_len + 1` ids (inputs = row[..seq_len], targets = row[1..]).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The step this batch is for (0-based).
    pub step: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Row-major, `batch_size × (seq_len + 1)`.
    pub tokens: Vec<u32>,
    /// Domain index of each row (see [`Sampler::domain_names`]).
    pub domain: Vec<u16>,
    /// Per row, the positions (1..=seq_len) where a new document starts.
    pub doc_starts: Vec<Vec<u32>>,
    pub cross_doc_attention: bool,
}

impl Batch {
    pub fn row(&self, i: usize) -> &[u32] {
        let w = self.seq_len + 1;
        &self.tokens[i * w..(i + 1) * w]
    }

    /// All ids as `i64` (what `tch` wants for an index tensor), row-major `B × (T + 1)`.
    pub fn tokens_i64(&self) -> Vec<i64> {
        self.tokens.iter().map(|&t| t as i64).collect()
    }

    /// Per position of row `i` (`seq_len + 1` entries), the index of its document within the
    /// row. A separator belongs to the document it ends. For a block-diagonal mask: position p
    /// may attend to q ≤ p iff `seg[p] == seg[q]`.
    pub fn segment_ids(&self, i: usize) -> Vec<u32> {
        let mut seg = vec![0u32; self.seq_len + 1];
        let mut s = 0u32;
        let mut next = self.doc_starts[i].iter().peekable();
        for (p, v) in seg.iter_mut().enumerate() {
            while next.peek().is_some_and(|&&q| q as usize == p) {
                s += 1;
                next.next();
            }
            *v = s;
        }
        seg
    }
}

/// Position in a domain's endless stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cursor {
    pub epoch: u64,
    /// Index into this epoch's permutation of the subset's documents.
    pub doc_pos: u64,
    /// Token offset within the document; `== tokens` means the separator is next.
    pub offset: u64,
}

/// One domain's endless, per-epoch-shuffled stream of documents + separators.
pub(crate) struct Stream {
    pub subset: Subset,
    seed: Option<u64>,
    perms: Vec<(u64, Arc<Vec<u32>>)>,
}

impl Stream {
    /// `seed = None` keeps the subset's order every epoch (validation).
    pub fn new(subset: Subset, seed: Option<u64>) -> Self {
        Self {
            subset,
            seed,
            perms: Vec::new(),
        }
    }

    fn perm(&mut self, epoch: u64) -> Arc<Vec<u32>> {
        if let Some((_, p)) = self.perms.iter().find(|(e, _)| *e == epoch) {
            return p.clone();
        }
        let n = self.subset.spans.len();
        let mut p: Vec<u32> = (0..n as u32).collect();
        if let Some(seed) = self.seed {
            let mut h = blake3::Hasher::new();
            h.update(b"dctk-sampler-epoch\0");
            h.update(&seed.to_le_bytes());
            h.update(self.subset.domain.as_bytes());
            h.update(&[0]);
            h.update(&epoch.to_le_bytes());
            let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
            // Fisher–Yates with an unbiased bounded draw, written out so the permutation depends
            // only on the ChaCha8 stream (portable and specified), not on a library's shuffle.
            for i in (1..n).rev() {
                let j = bounded(&mut rng, i as u64 + 1) as usize;
                p.swap(i, j);
            }
        }
        let p = Arc::new(p);
        if self.perms.len() >= 2 {
            self.perms.remove(0);
        }
        self.perms.push((epoch, p.clone()));
        p
    }

    /// Append `n` tokens from `cur` to `out` (advancing `cur`); record document starts at row
    /// positions > 0 (`row_start` is where the row begins in `out`). Returns separators taken.
    pub fn take(
        &mut self,
        cur: &mut Cursor,
        n: usize,
        out: &mut Vec<u32>,
        row_start: usize,
        starts: &mut Vec<u32>,
    ) -> u64 {
        let mut left = n;
        let mut eots = 0;
        let spans = self.subset.spans.clone();
        let eot = self.subset.eot_id;
        let mut perm = self.perm(cur.epoch);
        let mut perm_epoch = cur.epoch;
        while left > 0 {
            if perm_epoch != cur.epoch {
                perm = self.perm(cur.epoch);
                perm_epoch = cur.epoch;
            }
            let span = spans[perm[cur.doc_pos as usize] as usize];
            let pos = out.len() - row_start;
            if cur.offset == 0 && pos > 0 {
                starts.push(pos as u32);
            }
            if cur.offset < span.tokens as u64 {
                let k = left.min((span.tokens as u64 - cur.offset) as usize);
                self.subset
                    .store
                    .extend(span.shard, span.start + cur.offset, k, out);
                cur.offset += k as u64;
                left -= k;
            } else {
                out.push(eot);
                eots += 1;
                left -= 1;
                cur.offset = 0;
                cur.doc_pos += 1;
                if cur.doc_pos == spans.len() as u64 {
                    cur.doc_pos = 0;
                    cur.epoch += 1;
                }
            }
        }
        eots
    }
}

/// Unbiased integer in `0..n` (Lemire's multiply-shift with rejection).
fn bounded(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Per-domain part of the sampler state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCursorState {
    pub name: String,
    pub fingerprint: String,
    pub cursor: Cursor,
    /// Tokens this domain has advanced its stream by (= its share of steps × batch × seq_len).
    pub tokens_served: u64,
    /// Of which separators.
    pub separators_served: u64,
    pub sequences: u64,
    /// Smooth weighted round-robin credit (parts per 10⁹).
    pub credit: i64,
    pub exhausted: bool,
}

/// Everything needed to resume exactly (serde; store it in the checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub version: u32,
    /// blake3 of the configuration (seed, shapes, proportions, packing, exhaustion policies).
    pub config_hash: String,
    pub step: u64,
    pub domains: Vec<DomainCursorState>,
}

/// Exact per-domain accounting, for the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainAccounting {
    pub name: String,
    pub kind: DomainKind,
    pub exhaustion: Exhaustion,
    /// Tokens of the unique subset (documents only) and its document count.
    pub unique_tokens: u64,
    pub unique_docs: u64,
    /// Tokens of one epoch as served (documents + one separator each).
    pub epoch_tokens: u64,
    pub tokens_served: u64,
    pub separators_served: u64,
    pub sequences_served: u64,
    /// `tokens_served / epoch_tokens`.
    pub realized_epochs: f64,
    pub completed_epochs: u64,
    /// Distinct subset tokens served at least once.
    pub unique_tokens_seen: u64,
    /// Out of the mixture: it cannot serve another sequence within its epoch limit.
    pub exhausted: bool,
}

/// The mixture's accounting. An **epoch** is one pass over the selected unique subsets as
/// served: every document followed by its separator (`epoch_tokens` per domain; the trainer
/// uses the same definition for its step count, its epoch-end steps and `epochs_realized`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixAccounting {
    pub steps: u64,
    pub batch_size: u64,
    pub seq_len: u64,
    /// = steps × batch_size × seq_len, exactly; and = the sum over domains.
    pub tokens_served: u64,
    pub real_tokens_served: u64,
    pub synthetic_tokens_served: u64,
    pub domains: Vec<DomainAccounting>,
}

impl MixAccounting {
    /// Tokens of one epoch of the whole mixture: the domains' `epoch_tokens` summed.
    pub fn epoch_tokens(&self) -> u64 {
        self.domains.iter().map(|d| d.epoch_tokens).sum()
    }

    /// Epochs of the whole mixture served: `tokens_served / epoch_tokens()`.
    pub fn realized_epochs(&self) -> f64 {
        self.tokens_served as f64 / self.epoch_tokens() as f64
    }
}

/// See the module documentation.
pub struct Sampler {
    cfg: SamplerConfig,
    exhaustion: Vec<Exhaustion>,
    streams: Vec<Stream>,
    state: SamplerState,
}

const WEIGHT_SCALE: f64 = 1e9;
const STATE_VERSION: u32 = 1;

impl Sampler {
    pub fn new(domains: Vec<MixDomain>, cfg: SamplerConfig) -> Result<Self> {
        if cfg.seq_len == 0 || cfg.batch_size == 0 {
            return Err(DataError::Config(
                "seq_len and batch_size must be ≥ 1".into(),
            ));
        }
        if domains.is_empty() || domains.len() > u16::MAX as usize {
            return Err(DataError::Config(
                "a mixture needs 1..=65535 domains".into(),
            ));
        }
        cfg.proportions.validate(domains.len())?;
        for (i, d) in domains.iter().enumerate() {
            if d.subset.spans.is_empty() {
                return Err(DataError::Config(format!(
                    "domain `{}` has an empty subset",
                    d.subset.domain
                )));
            }
            if domains[..i]
                .iter()
                .any(|e| e.subset.domain == d.subset.domain)
            {
                return Err(DataError::Config(format!(
                    "domain `{}` appears twice in the mixture",
                    d.subset.domain
                )));
            }
            if d.exhaustion == Exhaustion::StopAfterEpochs(0) {
                return Err(DataError::Config(format!(
                    "domain `{}`: StopAfterEpochs(0) serves nothing",
                    d.subset.domain
                )));
            }
        }
        let exhaustion: Vec<Exhaustion> = domains.iter().map(|d| d.exhaustion).collect();
        let mut h = blake3::Hasher::new();
        let cfg_ron =
            ron::to_string(&(&cfg, &exhaustion)).map_err(|e| DataError::Config(e.to_string()))?;
        h.update(cfg_ron.as_bytes());
        for d in &domains {
            h.update(d.subset.fingerprint.as_bytes());
        }
        let state = SamplerState {
            version: STATE_VERSION,
            config_hash: h.finalize().to_hex().to_string(),
            step: 0,
            domains: domains
                .iter()
                .map(|d| DomainCursorState {
                    name: d.subset.domain.clone(),
                    fingerprint: d.subset.fingerprint.clone(),
                    cursor: Cursor::default(),
                    tokens_served: 0,
                    separators_served: 0,
                    sequences: 0,
                    credit: 0,
                    exhausted: false,
                })
                .collect(),
        };
        let seed = cfg.seed;
        let streams = domains
            .into_iter()
            .map(|d| Stream::new(d.subset, Some(seed)))
            .collect();
        Ok(Self {
            cfg,
            exhaustion,
            streams,
            state,
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    pub fn domain_names(&self) -> Vec<&str> {
        self.streams
            .iter()
            .map(|s| s.subset.domain.as_str())
            .collect()
    }

    /// The step the next batch is for.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// Can domain `d` serve one more sequence under its exhaustion policy?
    fn can_serve(&self, st: &DomainCursorState, d: usize) -> bool {
        match self.exhaustion[d] {
            Exhaustion::Repeat => true,
            Exhaustion::StopAfterEpochs(k) => {
                let allowed = k as u64 * self.streams[d].subset.epoch_tokens();
                allowed.saturating_sub(st.tokens_served) > self.cfg.seq_len as u64
            }
        }
    }

    /// The next batch. On error (every domain exhausted) the state is unchanged.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let (seq_len, bs) = (self.cfg.seq_len, self.cfg.batch_size);
        let step = self.state.step;
        let mut st = self.state.domains.clone();
        let weights = self.cfg.proportions.at(step);
        let mut tokens = Vec::with_capacity(bs * (seq_len + 1));
        let mut domain = Vec::with_capacity(bs);
        let mut doc_starts = Vec::with_capacity(bs);
        for _ in 0..bs {
            // Retire domains that cannot serve another row within their epoch limit.
            for (i, s) in st.iter_mut().enumerate() {
                if !s.exhausted && !self.can_serve(s, i) {
                    s.exhausted = true;
                    s.credit = 0;
                }
            }
            // Renormalise over the domains still in the mixture, in integer parts per 10⁹.
            let live: f64 = st
                .iter()
                .zip(&weights)
                .filter(|(s, _)| !s.exhausted)
                .map(|(_, w)| *w)
                .sum();
            if live <= 0.0 {
                return Err(DataError::Exhausted { step });
            }
            let w_int: Vec<i64> = st
                .iter()
                .zip(&weights)
                .map(|(s, w)| {
                    if s.exhausted {
                        0
                    } else {
                        (w / live * WEIGHT_SCALE).round() as i64
                    }
                })
                .collect();
            let total: i64 = w_int.iter().sum();
            // Credit every live domain; pick the largest credit (ties: lowest index).
            let mut best: Option<usize> = None;
            for i in 0..st.len() {
                if w_int[i] > 0 {
                    st[i].credit += w_int[i];
                    if best.is_none_or(|b| st[i].credit > st[b].credit) {
                        best = Some(i);
                    }
                }
            }
            let Some(d) = best else {
                return Err(DataError::Exhausted { step });
            };
            st[d].credit -= total;
            let row_start = tokens.len();
            let mut starts = Vec::new();
            let s = &mut st[d];
            let eots =
                self.streams[d].take(&mut s.cursor, seq_len, &mut tokens, row_start, &mut starts);
            // The last target peeks at the next token without consuming it.
            let mut peek = s.cursor;
            self.streams[d].take(&mut peek, 1, &mut tokens, row_start, &mut starts);
            s.tokens_served += seq_len as u64;
            s.separators_served += eots;
            s.sequences += 1;
            domain.push(d as u16);
            doc_starts.push(starts);
        }
        self.state.domains = st;
        self.state.step += 1;
        Ok(Batch {
            step,
            batch_size: bs,
            seq_len,
            tokens,
            domain,
            doc_starts,
            cross_doc_attention: self.cfg.packing.cross_doc_attention,
        })
    }

    /// A copy of the state to checkpoint (together with the step's model state).
    pub fn state(&self) -> SamplerState {
        self.state.clone()
    }

    /// Resume from a checkpointed state. Refuses a state whose configuration or subsets differ.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.version != STATE_VERSION {
            return Err(DataError::StateMismatch(format!(
                "state version {} (expected {STATE_VERSION})",
                state.version
            )));
        }
        if state.config_hash != self.state.config_hash {
            return Err(DataError::StateMismatch(
                "configuration (seed, shapes, proportions, policies or subsets) differs".into(),
            ));
        }
        if state.domains.len() != self.streams.len()
            || state
                .domains
                .iter()
                .zip(&self.streams)
                .any(|(d, s)| d.name != s.subset.domain || d.fingerprint != s.subset.fingerprint)
        {
            return Err(DataError::StateMismatch(
                "domains or their subsets differ".into(),
            ));
        }
        for (d, s) in state.domains.iter().zip(&self.streams) {
            if d.cursor.doc_pos >= s.subset.spans.len() as u64 {
                return Err(DataError::StateMismatch(format!(
                    "domain `{}`: cursor past the end of its subset",
                    d.name
                )));
            }
        }
        self.state = state;
        Ok(())
    }

    /// Exact accounting so far (write it into the run manifest).
    pub fn accounting(&self) -> MixAccounting {
        let mut domains = Vec::new();
        let (mut real, mut synth) = (0u64, 0u64);
        for (i, ((s, st), ex)) in self
            .streams
            .iter()
            .zip(&self.state.domains)
            .zip(&self.exhaustion)
            .enumerate()
        {
            let e = s.subset.epoch_tokens();
            let completed = st.tokens_served / e;
            let content_served = st.tokens_served - st.separators_served;
            if s.subset.kind.is_synthetic() {
                synth += st.tokens_served;
            } else {
                real += st.tokens_served;
            }
            domains.push(DomainAccounting {
                name: s.subset.domain.clone(),
                kind: s.subset.kind.clone(),
                exhaustion: *ex,
                unique_tokens: s.subset.unique_tokens,
                unique_docs: s.subset.spans.len() as u64,
                epoch_tokens: e,
                tokens_served: st.tokens_served,
                separators_served: st.separators_served,
                sequences_served: st.sequences,
                realized_epochs: st.tokens_served as f64 / e as f64,
                completed_epochs: completed,
                unique_tokens_seen: if completed >= 1 {
                    s.subset.unique_tokens
                } else {
                    content_served
                },
                exhausted: st.exhausted || !self.can_serve(st, i),
            });
        }
        MixAccounting {
            steps: self.state.step,
            batch_size: self.cfg.batch_size as u64,
            seq_len: self.cfg.seq_len as u64,
            tokens_served: real + synth,
            real_tokens_served: real,
            synthetic_tokens_served: synth,
            domains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_is_in_range_and_roughly_uniform() {
        let mut rng = ChaCha8Rng::from_seed([7; 32]);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[bounded(&mut rng, 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(bounded(&mut rng, 1), 0);
    }

    #[test]
    fn proportions_schedules() {
        let p = Proportions::Piecewise(vec![
            SchedulePoint {
                step: 5,
                weights: vec![1.0, 3.0],
            },
            SchedulePoint {
                step: 10,
                weights: vec![1.0, 1.0],
            },
        ]);
        assert_eq!(p.at(0), vec![0.25, 0.75]);
        assert_eq!(p.at(9), vec![0.25, 0.75]);
        assert_eq!(p.at(10), vec![0.5, 0.5]);
        assert!(p.validate(2).is_ok());
        assert!(p.validate(3).is_err());
        assert!(Proportions::Constant(vec![0.0, 0.0]).validate(2).is_err());
        assert!(Proportions::Constant(vec![f64::NAN, 1.0])
            .validate(2)
            .is_err());
        let bad = Proportions::Linear(vec![
            SchedulePoint {
                step: 5,
                weights: vec![1.0],
            },
            SchedulePoint {
                step: 5,
                weights: vec![1.0],
            },
        ]);
        assert!(bad.validate(1).is_err());
    }
}
