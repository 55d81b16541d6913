//! Times `dctk_laws::optimize_bimix` over 22 domains (the Pile's count), with per-domain bounds:
//! `cargo run --release -p dctk-laws --example bench_mixture [REPEATS]`. Prints the median and
//! minimum wall time of one solve and the optimum's predicted loss.
use dctk_laws::{optimize_bimix, MixDomain};
use std::time::Instant;

fn main() {
    let repeats: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1001);
    // Parameters of the magnitude BiMix fits give (AB, CB of a few nats, a ∈ [0.3, 0.5],
    // b ∈ [0.01, 0.13]), varied across domains; bounds [0.005, 0.3] on every domain.
    let domains: Vec<MixDomain> = (0..22)
        .map(|i| MixDomain {
            name: format!("d{i}"),
            ab: 1.0 + i as f64 * 0.1,
            cb: 1.5 + (i % 5) as f64 * 0.2,
            a: 0.3 + (i % 3) as f64 * 0.1,
            b: 0.01 + (i % 7) as f64 * 0.02,
            weight: 1.0 / 22.0,
            lower: 0.005,
            upper: 0.3,
        })
        .collect();
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let t = Instant::now();
        let opt = optimize_bimix(&domains, 20.0).expect("feasible bounds");
        times.push(t.elapsed().as_secs_f64());
        last = Some(opt);
    }
    times.sort_by(f64::total_cmp);
    let opt = last.expect("at least one repeat");
    println!(
        "optimize_bimix, 22 domains, bounds [0.005, 0.3]: median {:.1} us, min {:.1} us ({} solves); predicted loss {:.6}, sum r = {:.15}",
        times[times.len() / 2] * 1e6,
        times[0] * 1e6,
        repeats,
        opt.predicted_loss,
        opt.proportions.iter().sum::<f64>()
    );
}
