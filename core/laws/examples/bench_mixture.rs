//! Times the mixture optimiser over 22 domains (the Pile's count), with per-domain bounds:
//! BiMix at a step (`optimize_bimix`), dctk's data-constrained BiMix with epoch budgets at a
//! step (`optimize_mixture`), and the same over a step range (`optimize_mixture_and_steps`:
//! proportions and total tokens).
//! `cargo run --release -p dctk-laws --example bench_mixture [REPEATS]`. Prints the median and
//! minimum wall time of one solve and the optimum's predicted loss.
use dctk_laws::{optimize_bimix, optimize_mixture, optimize_mixture_and_steps, MixDomain, MixtureOptimum};
use std::time::Instant;

fn time(label: &str, repeats: usize, mut solve: impl FnMut() -> MixtureOptimum) {
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let t = Instant::now();
        let opt = solve();
        times.push(t.elapsed().as_secs_f64());
        last = Some(opt);
    }
    times.sort_by(f64::total_cmp);
    let opt = last.expect("at least one repeat");
    println!(
        "{label}: median {:.1} us, min {:.1} us ({} solves); predicted loss {:.6} at step {:.2}, sum r = {:.15}",
        times[times.len() / 2] * 1e6,
        times[0] * 1e6,
        repeats,
        opt.predicted_loss,
        opt.step,
        opt.proportions.iter().sum::<f64>()
    );
}

fn main() {
    let repeats: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1001);
    // Parameters of the magnitude BiMix fits give (AB, CB of a few nats, a ∈ [0.3, 0.5],
    // b ∈ [0.01, 0.13]), varied across domains; bounds [0.005, 0.3] on every domain.
    let domains: Vec<MixDomain> = (0..22)
        .map(|i| MixDomain {
            weight: 1.0 / 22.0,
            lower: 0.005,
            upper: 0.3,
            ..MixDomain::bimix(&format!("d{i}"), 1.0 + i as f64 * 0.1, 1.5 + (i % 5) as f64 * 0.2, 0.3 + (i % 3) as f64 * 0.1, 0.01 + (i % 7) as f64 * 0.02)
        })
        .collect();
    time("optimize_bimix, 22 domains, bounds [0.005, 0.3]", repeats, || optimize_bimix(&domains, 20.0).expect("feasible bounds"));
    // Data-constrained: unique tokens from 2e3 to 2e6 across domains, R* from 2 to 20, at most
    // 50 epochs of any domain, 1e4 tokens per step.
    let dc: Vec<MixDomain> = domains
        .iter()
        .enumerate()
        .map(|(i, d)| MixDomain { r_star: Some(2.0 + (i % 10) as f64 * 2.0), unique_tokens: Some(2e3 * 10f64.powf((i % 4) as f64)), max_epochs: Some(50.0), ..d.clone() })
        .collect();
    time("optimize_mixture (data-constrained, budgets), 22 domains", repeats, || optimize_mixture(&dc, 20.0, Some(1e4)).expect("feasible"));
    time("optimize_mixture_and_steps (data-constrained, steps 1-1000), 22 domains", (repeats / 50).max(3), || optimize_mixture_and_steps(&dc, 1.0, 1000.0, Some(1e4)).expect("feasible"));
}
