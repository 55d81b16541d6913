//! Validation: the loss of a model on each domain's fixed held-out windows.
use std::collections::BTreeMap;

use tch::Tensor;

use super::model::Gpt;
use super::step::BatchTensors;

/// Validation loss: per domain the mean over its fixed validation windows, and the
/// token-weighted mean over all domains.
pub fn evaluate(model: &Gpt, val: &[(String, Vec<BatchTensors>)]) -> (f64, BTreeMap<String, f64>) {
    let (mut total, mut count) = (0.0, 0i64);
    let mut by_domain = BTreeMap::new();
    tch::no_grad(|| {
        for (name, batches) in val {
            // Row-weighted losses summed on the device; one read per domain.
            let mut sum: Option<Tensor> = None;
            let mut rows = 0i64;
            for b in batches {
                // Through the fused, chunked head: no [rows·T, vocab] logits.
                let loss = model.forward_loss(&b.x, &b.y, b.mask.as_ref(), false).to_kind(tch::Kind::Double) * b.rows as f64;
                sum = Some(match sum {
                    None => loss,
                    Some(s) => s + loss,
                });
                rows += b.rows;
            }
            let dt = sum.map_or(0.0, |s| s.double_value(&[]));
            by_domain.insert(name.clone(), dt / rows as f64);
            total += dt;
            count += rows;
        }
    });
    (total / count as f64, by_domain)
}
