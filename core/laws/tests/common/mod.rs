//! Shared helpers for the integration tests: the Epoch data set and seeded
//! Gaussian noise.
#![allow(dead_code)]

use dctk_laws::{ColumnMap, Points};
use rand::{RngExt, SeedableRng};

/// Epoch's 245 digitised Chinchilla points with D = C/(6N), minus the 5
/// highest losses (Epoch's default analysis): 240 points.
pub fn epoch_points() -> Points {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chinchilla_epoch_svg_extracted.csv");
    let map = ColumnMap::parse("N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss").expect("mapping");
    let all = Points::from_csv(path, &map).expect("epoch csv");
    assert_eq!(all.len(), 245);
    let mut sorted = all.loss.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[4];
    let keep = all.indices_where(|_, y| y < cut);
    all.select(&keep).expect("select")
}

/// Seeded standard normal draws (Box–Muller).
pub struct Noise(rand_chacha::ChaCha8Rng);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }
    pub fn normal(&mut self) -> f64 {
        let u1: f64 = self.0.random_range(1e-12..1.0);
        let u2: f64 = self.0.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0.random_range(lo..hi)
    }
}

/// Relative difference.
pub fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}
