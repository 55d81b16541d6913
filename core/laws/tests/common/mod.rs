//! Shared helpers for the integration tests: the Epoch data set and seeded
//! Gaussian noise, synthetic Chinchilla points.
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

/// Chinchilla (Hoffmann et al. 2022, eq. 2) with E 1.69, A 406.4, B 410.7, α 0.34, β 0.28,
/// 8 token counts per model size, 0.1% multiplicative noise.
pub fn chinchilla_points(sizes: &[f64], seed: u64) -> Points {
    let mut rng = Noise::new(seed);
    let (mut ns, mut ds, mut ys) = (vec![], vec![], vec![]);
    for &n in sizes {
        for k in 0..8 {
            let d = 1e9 * 2f64.powi(k);
            let y = 1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28);
            ns.push(n);
            ds.push(d);
            ys.push(y * (1.0 + 0.001 * rng.normal()));
        }
    }
    Points::from_columns(vec![("N".into(), ns), ("D".into(), ds)], ys).unwrap()
}
