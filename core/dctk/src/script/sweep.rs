//! Sweeps: settings variants as plain arrays of maps, built in Rust so that a
//! 10,000-cell grid costs microseconds, not a Rhai loop's operations.
//!
//! ```rhai
//! let base = #{ model: "micro", corpus: "data:corpora", unique_tokens: 20_000, epochs: 4 };
//! let cells = sweep(base, product(
//!     grid(#{ model: ["micro", "tiny"], epochs: [1, 4, 16] }),   // 6 combinations
//!     zip(#{ lr: [3e-3, 1e-3], weight_decay: [0.1, 0.8] }),       // 2 paired settings
//! ));                                                             // 12 maps
//! let runs = train(cells);
//! ```
//!
//! `sweep` names each variant after what varies (`base-name/epochs=4,lr=0.003,...`, keys in
//! Rhai's sorted order), so
//! cells have readable labels in plans, tables and results.
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

fn err(ctx: &NativeCallContext, msg: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(msg.into(), ctx.call_position()).into()
}

/// The axes of a `grid`/`zip` map: each value must be a non-empty array.
fn axes(ctx: &NativeCallContext, what: &str, m: &Map) -> Result<Vec<(String, Array)>, Box<EvalAltResult>> {
    m.iter()
        .map(|(k, v)| {
            let values = v
                .clone()
                .try_cast::<Array>()
                .ok_or_else(|| err(ctx, format!("{what}: key \"{k}\" must be an array of values, got {}", v.type_name())))?;
            if values.is_empty() {
                return Err(err(ctx, format!("{what}: key \"{k}\" has no values")));
            }
            Ok((k.to_string(), values))
        })
        .collect()
}

/// The most variants `grid` or `product` makes (a study of more cells is a mistake, and
/// would exhaust memory before it said so).
pub const MAX_VARIANTS: usize = 1 << 20;

/// `grid(#{a: [1, 2], b: [3, 4]})`: every combination. Rhai maps keep their keys sorted,
/// so the alphabetically first key varies slowest.
pub fn grid(ctx: &NativeCallContext, m: &Map) -> Result<Array, Box<EvalAltResult>> {
    let axes = axes(ctx, "grid", m)?;
    let sizes: Vec<String> = axes.iter().map(|(k, v)| format!("{k}: {}", v.len())).collect();
    let total = axes.iter().try_fold(1usize, |n, (_, v)| n.checked_mul(v.len())).filter(|&n| n <= MAX_VARIANTS).ok_or_else(|| {
        err(ctx, format!("grid: the combinations of {} are more than the limit of {MAX_VARIANTS}", sizes.join(", ")))
    })?;
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let mut rest = i;
        let mut variant = Map::new();
        for (k, values) in axes.iter().rev() {
            variant.insert(k.as_str().into(), values[rest % values.len()].clone());
            rest /= values.len();
        }
        out.push(Dynamic::from_map(variant));
    }
    Ok(out)
}

/// `zip(#{a: [1, 2], b: [3, 4]})`: element-wise (`{a: 1, b: 3}`, `{a: 2, b: 4}`); the
/// arrays must have one length.
pub fn zip(ctx: &NativeCallContext, m: &Map) -> Result<Array, Box<EvalAltResult>> {
    let axes = axes(ctx, "zip", m)?;
    let n = axes.first().map_or(0, |(_, v)| v.len());
    if let Some((k, v)) = axes.iter().find(|(_, v)| v.len() != n) {
        return Err(err(ctx, format!("zip: key \"{k}\" has {} values but \"{}\" has {n}", v.len(), axes[0].0)));
    }
    Ok((0..n).map(|i| Dynamic::from_map(axes.iter().map(|(k, v)| (k.as_str().into(), v[i].clone())).collect())).collect())
}

fn maps(ctx: &NativeCallContext, what: &str, a: Array) -> Result<Vec<Map>, Box<EvalAltResult>> {
    a.into_iter()
        .enumerate()
        .map(|(i, d)| d.try_cast::<Map>().ok_or_else(|| err(ctx, format!("{what}: item {i} is not a map"))))
        .collect()
}

/// `product(a, b)`: every variant of `a` merged with every variant of `b`.
pub fn product(ctx: &NativeCallContext, a: Array, b: Array) -> Result<Array, Box<EvalAltResult>> {
    let (a, b) = (maps(ctx, "product", a)?, maps(ctx, "product", b)?);
    if a.len().checked_mul(b.len()).is_none_or(|n| n > MAX_VARIANTS) {
        return Err(err(ctx, format!("product: {} × {} variants is more than the limit of {MAX_VARIANTS}", a.len(), b.len())));
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in &a {
        for y in &b {
            if let Some(k) = y.keys().find(|k| x.contains_key(*k)) {
                return Err(err(ctx, format!("product: key \"{k}\" is on both sides")));
            }
            let mut m = x.clone();
            m.extend(y.clone());
            out.push(Dynamic::from_map(m));
        }
    }
    Ok(out)
}

/// A value as it appears in a cell's name: strings bare, arrays as `[a+b]`.
fn show(v: &Dynamic) -> String {
    if let Some(a) = v.clone().try_cast::<Array>() {
        return format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join("+"));
    }
    if v.is_map() {
        if let Some(name) = v.clone().cast::<Map>().get("name") {
            return show(name);
        }
    }
    v.to_string()
}

/// `sweep(base, variants)`: `base` with each variant's keys set, named after them.
pub fn sweep(ctx: &NativeCallContext, base: Map, variants: Array) -> Result<Array, Box<EvalAltResult>> {
    let variants = maps(ctx, "sweep", variants)?;
    let prefix = base.get("name").map(|n| n.to_string());
    Ok(variants
        .into_iter()
        .map(|v| {
            let what = v.iter().map(|(k, x)| format!("{k}={}", show(x))).collect::<Vec<_>>().join(",");
            let mut m = base.clone();
            let explicit_name = v.contains_key("name");
            m.extend(v);
            if !explicit_name {
                let name = match &prefix {
                    Some(p) if !what.is_empty() => format!("{p}/{what}"),
                    Some(p) => p.clone(),
                    None => what,
                };
                m.insert("name".into(), name.into());
            }
            Dynamic::from_map(m)
        })
        .collect())
}

pub fn register(engine: &mut Engine) {
    engine.register_fn("grid", |ctx: NativeCallContext, m: Map| grid(&ctx, &m));
    engine.register_fn("zip", |ctx: NativeCallContext, m: Map| zip(&ctx, &m));
    engine.register_fn("product", |ctx: NativeCallContext, a: Array, b: Array| product(&ctx, a, b));
    engine.register_fn("sweep", |ctx: NativeCallContext, base: Map, variants: Array| sweep(&ctx, base, variants));
}
