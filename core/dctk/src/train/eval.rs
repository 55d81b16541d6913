//! Validation: the loss of a model on each domain's fixed held-out windows.
use std::collections::BTreeMap;

use super::model::Gpt;
use super::step::BatchTensors;

/// Validation loss: per domain the mean over its fixed validation windows, and the
/// token-weighted mean over all domains.
pub fn evaluate(model: &Gpt, val: &[(String, Vec<BatchTensors>)]) -> (f64, BTreeMap<String, f64>) {
    let (mut total, mut count) = (0.0, 0i64);
    let mut by_domain = BTreeMap::new();
    tch::no_grad(|| {
        for (name, batches) in val {
            let (mut dt, mut dc) = (0.0, 0i64);
            for b in batches {
                let loss = Gpt::loss(&model.forward_masked(&b.x, b.mask.as_ref(), false), &b.y).double_value(&[]);
                dt += loss * b.rows as f64;
                dc += b.rows;
            }
            by_domain.insert(name.clone(), dt / dc as f64);
            total += dt;
            count += dc;
        }
    });
    (total / count as f64, by_domain)
}
