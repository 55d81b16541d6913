//! BoLT's training formats: how a document's chunks x_i and their latent thoughts z_i become
//! training text (Ruan, Band, Maddison, Hashimoto 2025, arXiv 2503.18866; authors' release
//! ryoungj/BoLT @024315f, `lingua/data.py::tokenize`, by `latent_type`):
//!
//! * `random`: per chunk, with probability 0.5 the prior form `SoL PRIOR z EoL x`, else the
//!   posterior form `SoL EoL x SoL POSTERIOR z EoL` (the empty `SoL EoL` marks the chunk
//!   boundary);
//! * `prior_only`: `SoL z EoL x` per chunk;
//! * `posterior_only`: `x SoL z EoL` per chunk;
//! * `pure`: the thoughts alone, each its own document (the release joins them with the
//!   end-of-text separator, which is what separate documents get here);
//! * `mix_in_raw_ratio`: with this probability per document, the raw text instead.
//!
//! The release draws these coins from the data loader's numpy stream; here each document has
//! its own ChaCha20 stream (seeded from its content key and the augmenter's seed), drawn in the
//! release's order: the raw-text coin first (only when the ratio is positive), then one coin
//! per chunk.
use std::str::FromStr;

use rand::Rng;

use super::{EOL, POSTERIOR, PRIOR, SOL};

/// Which training format (`latent_type` in the release).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatentFormat {
    Random,
    PriorOnly,
    PosteriorOnly,
    Pure,
}

impl LatentFormat {
    pub const NAMES: [&'static str; 4] = ["random", "prior_only", "posterior_only", "pure"];

    pub fn as_str(self) -> &'static str {
        match self {
            LatentFormat::Random => "random",
            LatentFormat::PriorOnly => "prior_only",
            LatentFormat::PosteriorOnly => "posterior_only",
            LatentFormat::Pure => "pure",
        }
    }
}

impl FromStr for LatentFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(LatentFormat::Random),
            "prior_only" => Ok(LatentFormat::PriorOnly),
            "posterior_only" => Ok(LatentFormat::PosteriorOnly),
            "pure" => Ok(LatentFormat::Pure),
            other => Err(format!("unknown format \"{other}\" (one of {})", LatentFormat::NAMES.join(", "))),
        }
    }
}

/// The prior form of one chunk in the `random` format: `SoL PRIOR z EoL x`.
pub fn prior_form(z: &str, x: &str) -> String {
    format!("{SOL}{PRIOR}{z}{EOL}{x}")
}

/// The posterior form of one chunk in the `random` format: `SoL EoL x SoL POSTERIOR z EoL`.
pub fn posterior_form(z: &str, x: &str) -> String {
    format!("{SOL}{EOL}{x}{SOL}{POSTERIOR}{z}{EOL}")
}

/// What one document becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Formatted {
    /// The output documents: one, or one per thought for `pure`.
    pub texts: Vec<String>,
    /// The raw text was used (the `mix_in_raw_ratio` coin).
    pub raw: bool,
    /// Per chunk, whether the `random` format chose the prior form (empty otherwise).
    pub prior: Vec<bool>,
}

/// The training text of a document whose chunks are `chunks` (joined: the raw text) and
/// thoughts `thoughts` (same length), in `format`, drawing coins from `rng` (module doc).
pub fn format_document(chunks: &[String], thoughts: &[String], format: LatentFormat, mix_in_raw_ratio: f64, rng: &mut impl Rng) -> Formatted {
    debug_assert_eq!(chunks.len(), thoughts.len());
    if mix_in_raw_ratio > 0.0 && rng.random::<f64>() < mix_in_raw_ratio {
        return Formatted { texts: vec![chunks.concat()], raw: true, prior: Vec::new() };
    }
    let mut prior = Vec::new();
    let texts = match format {
        LatentFormat::Random => {
            let mut t = String::new();
            for (x, z) in chunks.iter().zip(thoughts) {
                let is_prior = rng.random::<f64>() < 0.5;
                prior.push(is_prior);
                t.push_str(&if is_prior { prior_form(z, x) } else { posterior_form(z, x) });
            }
            vec![t]
        }
        LatentFormat::PriorOnly => vec![chunks.iter().zip(thoughts).map(|(x, z)| format!("{SOL}{z}{EOL}{x}")).collect()],
        LatentFormat::PosteriorOnly => vec![chunks.iter().zip(thoughts).map(|(x, z)| format!("{x}{SOL}{z}{EOL}")).collect()],
        LatentFormat::Pure => thoughts.iter().filter(|z| !z.is_empty()).cloned().collect(),
    };
    Formatted { texts, raw: false, prior }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fixed_formats_are_exact() {
        let x = v(&["A b.", " C d."]);
        let z = v(&["t1", "t2"]);
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let f = format_document(&x, &z, LatentFormat::PriorOnly, 0.0, &mut rng);
        assert_eq!(f.texts, vec!["<|START_OF_LATENT|>t1<|END_OF_LATENT|>A b.<|START_OF_LATENT|>t2<|END_OF_LATENT|> C d.".to_string()]);
        let f = format_document(&x, &z, LatentFormat::PosteriorOnly, 0.0, &mut rng);
        assert_eq!(f.texts, vec!["A b.<|START_OF_LATENT|>t1<|END_OF_LATENT|> C d.<|START_OF_LATENT|>t2<|END_OF_LATENT|>".to_string()]);
        let f = format_document(&x, &z, LatentFormat::Pure, 0.0, &mut rng);
        assert_eq!(f.texts, v(&["t1", "t2"]));
        assert!(!f.raw);
        assert_eq!(prior_form("z", "x"), "<|START_OF_LATENT|><|PRIOR_PREFIX|>z<|END_OF_LATENT|>x");
        assert_eq!(posterior_form("z", "x"), "<|START_OF_LATENT|><|END_OF_LATENT|>x<|START_OF_LATENT|><|POSTERIOR_PREFIX|>z<|END_OF_LATENT|>");
    }

    #[test]
    fn random_format_follows_its_coins() {
        let x = v(&["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"]);
        let z = v(&["z0", "z1", "z2", "z3", "z4", "z5", "z6", "z7"]);
        // The coins are the stream's first draws: replay them.
        let mut replay = ChaCha20Rng::seed_from_u64(9);
        let coins: Vec<bool> = (0..8).map(|_| replay.random::<f64>() < 0.5).collect();
        let f = format_document(&x, &z, LatentFormat::Random, 0.0, &mut ChaCha20Rng::seed_from_u64(9));
        assert_eq!(f.prior, coins);
        let expect: String = (0..8).map(|i| if coins[i] { prior_form(&z[i], &x[i]) } else { posterior_form(&z[i], &x[i]) }).collect();
        assert_eq!(f.texts, vec![expect]);
        // Both forms occur over 8 chunks for this seed (a format that ignored its coins fails).
        assert!(coins.contains(&true) && coins.contains(&false), "{coins:?}");
        // Same seed, same text.
        assert_eq!(f, format_document(&x, &z, LatentFormat::Random, 0.0, &mut ChaCha20Rng::seed_from_u64(9)));
    }

    #[test]
    fn mix_in_raw_ratio_uses_the_raw_text_with_that_probability() {
        let x = v(&["Raw", " text."]);
        let z = v(&["a", "b"]);
        let all = format_document(&x, &z, LatentFormat::PriorOnly, 1.0, &mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!((all.texts, all.raw), (vec!["Raw text.".to_string()], true));
        let raw = (0..2000u64).filter(|&s| format_document(&x, &z, LatentFormat::PriorOnly, 0.25, &mut ChaCha20Rng::seed_from_u64(s)).raw).count();
        assert!((400..600).contains(&raw), "{raw} of 2000 raw at ratio 0.25");
    }
}
