//! Round trips of every type a run writes (manifest, result, checkpoint state) through RON
//! exactly as `manifest.ron`, `result.ron` and `ckpt/state.ron` are written
//! (pretty RON with struct names, the format manifests are written in) and read back (`ron::from_str`).
use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::checkpoint::CheckpointState;
use super::spec::{ModelChoice, TrainSpec};
use super::model::VocabLayout;
use super::{EvalPoint, ModelConfig, RunPlan, RunResult};
use dctk_data::sampler::DomainCursorState;
use dctk_data::{DomainAccounting, DomainKind, Exhaustion, MixAccounting, SamplerState};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> T {
    // The manifests' format (`study::to_ron`); spelled out here so `train` never depends on
    // the study layer, and `study`'s own test round-trips through `to_ron` itself.
    let text = ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default().struct_names(true)).unwrap();
    let back: T = ron::from_str(&text).unwrap_or_else(|e| panic!("{e}\nreading back:\n{text}"));
    assert_eq!(&back, value, "round trip changed the value:\n{text}");
    back
}

fn spec(extra: serde_json::Value) -> TrainSpec {
    let mut v = json!({"corpus": "c.jsonl", "unique_tokens": 10_000, "epochs": 2, "seq_len": 32});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    TrainSpec::from_json(v).unwrap()
}

#[test]
fn every_train_spec_form_round_trips_through_ron() {
    let models = [
        json!("micro"),
        json!({"n_layer": 1, "d_model": 64, "n_head": 2}),
        json!({"n_layer": 2, "d_model": 64, "n_head": 4, "d_ff": 96}),
    ];
    for model in models {
        let s = round_trip(&spec(json!({
            "name": "cell", "model": model, "micro_batch": 8, "final_lr_frac": 0.1, "eval_every": 5,
            "checkpoint_every": 10, "threads": 2, "cross_doc_attention": false, "schedule": "cosine",
            "domains": {"code": {"weight": 3.0}, "math": {"unique_tokens": 500, "epochs_limit": 2}},
            "schedule_mix": [{"step": 0, "weights": {"code": 1.0, "math": 3.0}}, {"step": 50, "weights": {"code": 1.0, "math": 1.0}}],
            "regularizers": ["zloss", {"name": "mir", "settings": {"lambda": 0.4}}],
        })));
        // And the JSON a script hands over parses into the same value.
        assert_eq!(TrainSpec::from_json(serde_json::to_value(&s).unwrap()).unwrap(), s);
    }
    let s = round_trip(&spec(json!({"model": {"n_layer": 1, "d_model": 64, "n_head": 2}})));
    assert_eq!(s.model, ModelChoice::Shape { n_layer: 1, d_model: 64, n_head: 2, d_ff: None });
    round_trip(&spec(json!({})));
}

#[test]
fn a_shape_rejects_unknown_keys_naming_the_model() {
    let e = TrainSpec::from_json(json!({"corpus": "c", "unique_tokens": 10_000, "epochs": 1,
        "model": {"n_layer": 1, "d_model": 64, "n_heads": 2}}))
    .unwrap_err();
    assert!(e.contains("key \"model\""), "{e}");
}

#[test]
fn plan_model_config_and_checkpoint_state_round_trip_through_ron() {
    let s = spec(json!({"eval_every": 3}));
    let layout = VocabLayout::new(8192, &[("mir".into(), 1)]);
    round_trip(&RunPlan::new(&s, 10_000, 10_100, layout.clone()).unwrap());
    round_trip(&layout);
    round_trip(&ModelConfig::new(1, 64, 2, 50_304, 32));
    round_trip(&s.model_config(&layout).unwrap());
    let sampler = SamplerState {
        version: 1,
        config_hash: "abc".into(),
        step: 7,
        domains: vec![DomainCursorState {
            name: "code".into(),
            fingerprint: "f".into(),
            cursor: dctk_data::sampler::Cursor { epoch: 1, doc_pos: 3, offset: 9 },
            tokens_served: 100,
            separators_served: 2,
            sequences: 3,
            credit: -5,
            exhausted: false,
        }],
    };
    round_trip(&CheckpointState { step: 7, adam_step: 7, run_id: "id".into(), data_fingerprint: "fp".into(), sampler: Some(sampler) });
    round_trip(&CheckpointState { step: 0, adam_step: 0, run_id: "id".into(), data_fingerprint: "fp".into(), sampler: None });
}

#[test]
fn run_result_round_trips_through_ron() {
    let point = |step: u64| EvalPoint {
        step,
        tokens: step * 256,
        epoch: step as f64 / 3.0,
        val_loss: 10.0 / (step + 1) as f64,
        val_loss_by_domain: BTreeMap::from([("code".to_string(), 1.25), ("math".to_string(), 2.5e-3)]),
    };
    let domain = |name: &str, kind: DomainKind, exhaustion: Exhaustion| DomainAccounting {
        name: name.into(),
        kind,
        exhaustion,
        unique_tokens: 1000,
        unique_docs: 10,
        epoch_tokens: 1010,
        tokens_served: 3000,
        separators_served: 30,
        sequences_served: 90,
        realized_epochs: 3000.0 / 1010.0,
        completed_epochs: 2,
        unique_tokens_seen: 1000,
        exhausted: false,
    };
    let result = RunResult {
        run_id: "0123456789abcdef".into(),
        run_dir: "runs/0123456789abcdef".into(),
        status: "done".into(),
        device: "cpu".into(),
        precision: "fp32".into(),
        threads: 2,
        params: 6_500_000,
        non_embedding_params: 50_000,
        flops_per_token: 1.2345e7,
        unique_tokens: 2000,
        epochs: 3.0,
        epochs_realized: 2.99,
        steps: 20,
        tokens_per_step: 256,
        train_tokens: 5120,
        final_val_loss: 6.902597291128976,
        final_val_loss_by_domain: BTreeMap::from([("code".to_string(), 6.639443601880755)]),
        best_val_loss: 6.5,
        final_train_loss: 7.1,
        curve: vec![point(0), point(10), point(20)],
        val_loss_by_epoch: vec![point(10)],
        tokens_per_s: 1234.5,
        wall_s: 3.25,
        resumed_from_step: Some(10),
        exhausted_at_step: None,
        accounting: MixAccounting {
            steps: 20,
            batch_size: 8,
            seq_len: 32,
            tokens_served: 6000,
            real_tokens_served: 3000,
            synthetic_tokens_served: 3000,
            domains: vec![
                domain("code", DomainKind::Real, Exhaustion::Repeat),
                domain(
                    "gen",
                    DomainKind::Synthetic { generator: "g".into(), source_domains: vec!["code".into()] },
                    Exhaustion::StopAfterEpochs(3),
                ),
            ],
        },
        real_unique_tokens: 1000,
        real_tokens_seen: 3000,
        synthetic_tokens_seen: 3000,
        real_epochs: 2.5,
        synthetic_epochs: 1.5,
        synthetic_epochs_by_stream: BTreeMap::from([("gen".to_string(), 1.5)]),
        mix_ratio: 0.5,
        mix_ratio_realized: 0.5,
        synthetic_epochs_kim: 3.0,
        real_tokens_equivalent: 5500.0,
        divergence: None,
    };
    round_trip(&result);
    // A diverged run records why (NaN does not equal itself, so compare the text).
    let diverged = RunResult {
        status: "diverged".into(),
        divergence: Some(super::results::Divergence { step: 3, cause: "grad norm".into(), train_loss: 9.5, aux_loss: Some(1.0), grad_norm: f64::INFINITY }),
        ..result
    };
    round_trip(&diverged);
}
