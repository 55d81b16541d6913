//! Host-side plugin tests over the real libraries the workspace builds
//! (`cargo build --release --workspace` first): the handshake's refusals, panics
//! turned into errors, settings validation, and a toy model trained through
//! [`RegularizerSet`] with MIR and z-loss. A crate-level test module (beside `plugin` and
//! `train`, which it both uses), so that `plugin` itself never depends on `train`.
use crate::plugin::*;
use std::path::PathBuf;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// `target/<profile>/<file>`, next to this test executable's `deps/`.
fn built(file: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(file);
    assert!(p.exists(), "{} is missing: run `cargo build --release --workspace` before these tests", p.display());
    p
}

fn lib(stem: &str) -> String {
    built(&format!("lib{stem}.so")).display().to_string()
}

/// The built library `lib<stem>.so`, declared for this process (as `dctk plugins check FILE`
/// does): its plugin name.
fn declared(stem: &str) -> String {
    declare(std::path::Path::new(&lib(stem))).unwrap().name.clone()
}

#[test]
fn refuses_a_different_abi_version_and_keeps_going() {
    let e = format!("{:#}", load(std::path::Path::new(&lib("dctk_fixture_bad_abi"))).unwrap_err());
    assert!(e.contains("plugin ABI version 999") && e.contains("this dctk speaks ABI version 3") && e.contains("rebuild the plugin"), "{e}");
    // The host is fine: a good plugin still loads.
    assert_eq!(load(std::path::Path::new(&lib("dctk_plugin_mir"))).unwrap().name, "mir");
}

#[test]
fn refuses_a_library_without_the_symbol() {
    let e = format!("{:#}", load(std::path::Path::new(&lib("dctk_fixture_no_symbol"))).unwrap_err());
    assert!(e.contains("missing symbol `dctk_plugin_descriptor`") && e.contains("not a dctk plugin"), "{e}");
}

#[test]
fn a_panic_inside_a_plugin_becomes_an_error() {
    let path = declared("dctk_fixture_panicky");
    // Panic in the constructor.
    let e = load_regularizers(&[RegularizerRequest::new(&path, serde_json::json!({"panic_in": "new"}))], 0)
        .err()
        .expect("constructor panic must be an error");
    let e = format!("{e:#}");
    assert!(e.contains("`panicky`") && e.contains("plugin panicked: fixture panic in new"), "{e}");
    // Panic in aux_loss, twice: the host survives both and the set is still usable.
    let mut set = load_regularizers(&[RegularizerRequest::new(&path, serde_json::Value::Null)], 0).unwrap();
    let x = Tensor::zeros([2, 16], (Kind::Int64, Device::Cpu));
    for step in 0..2 {
        let mb = MicroBatch { step, micro: 0, base_vocab: 60, inputs: &x, targets: &x, hidden: None };
        let e = format!("{:#}", set.aux_loss(&LogitsHead, &mb, &mut |ids| ids.to_kind(Kind::Float)).err().unwrap());
        assert!(e.contains("regularizer `panicky`") && e.contains("fixture panic in aux_loss"), "{e}");
    }
    // And other plugins still work afterwards.
    let mut mir = load_regularizers(&[RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::Value::Null)], 0).unwrap();
    let (_vs, model) = toy_model(64);
    let mb = MicroBatch { step: 0, micro: 0, base_vocab: 60, inputs: &x, targets: &x, hidden: None };
    assert!(mir.aux_loss(&LogitsHead, &mb, &mut |ids| model.forward(ids)).unwrap().loss.is_some());
}

#[test]
fn host_forward_panics_are_errors_too() {
    let mut set = load_regularizers(&[RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::Value::Null)], 0).unwrap();
    let x = Tensor::zeros([2, 16], (Kind::Int64, Device::Cpu));
    let mb = MicroBatch { step: 0, micro: 0, base_vocab: 60, inputs: &x, targets: &x, hidden: None };
    let e = format!("{:#}", set.aux_loss(&LogitsHead, &mb, &mut |_| panic!("model exploded")).err().unwrap());
    assert!(e.contains("`mir`") && e.contains("model exploded"), "{e}");
}

#[test]
fn settings_are_validated_before_any_run() {
    let mir = declared("dctk_plugin_mir");
    let e = format!("{:#}", load_regularizers(&[RegularizerRequest::new(&mir, serde_json::json!({"lamda": 0.1}))], 0).err().unwrap());
    assert!(e.contains("plugin `mir`") && e.contains("unknown setting `lamda`") && e.contains("lambda"), "{e}");
    let e = format!("{:#}", load_regularizers(&[RegularizerRequest::new(&mir, serde_json::json!({"r_max": "half"}))], 0).err().unwrap());
    assert!(e.contains("`r_max` must be of type float"), "{e}");
    let e = format!(
        "{:#}",
        load_regularizers(&[RegularizerRequest::new(&mir, serde_json::json!({"r_min": 0.4, "r_max": 0.2}))], 0).err().unwrap()
    );
    assert!(e.contains("r_min") && e.contains("mir"), "{e}");
    let e = format!("{:#}", load_regularizers(&[RegularizerRequest::new("no_such_plugin", serde_json::Value::Null)], 0).err().unwrap());
    assert!(e.contains("no plugin named `no_such_plugin`"), "{e}");
}

#[test]
fn plugin_names_that_are_paths_are_refused_naming_the_setting() {
    let mir = lib("dctk_plugin_mir");
    for name in [mir.as_str(), "/x/lib.so", "../plugins/mir", "mir.so", "Mir", ""] {
        let req = [RegularizerRequest::new(name, serde_json::Value::Null)];
        for e in [load_regularizers(&req, 0).err().unwrap(), validate_regularizers(&req).err().unwrap()] {
            let e = format!("{e:#}");
            assert!(e.contains("key \"regularizers\"") && e.contains(&format!("\"{name}\" is not a plugin name")), "{e}");
        }
        let e = format!("{:#}", law::load_law(name).err().unwrap());
        assert!(e.contains("is not a plugin name"), "{e}");
        let e = format!("{:#}", augmenter::load_augmenter(name, &serde_json::Value::Null).err().unwrap());
        assert!(e.contains("is not a plugin name"), "{e}");
    }
    // The same library by name, from the search path (beside the test binary's target dir).
    assert_eq!(find("mir").unwrap().name, "mir");
}

/// A bigram toy LM over `vocab` rows: logits [B, T, vocab] for ids [B, T].
fn toy_model(vocab: i64) -> (nn::VarStore, impl Module) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let emb = nn::embedding(&root / "wte", vocab, 32, Default::default());
    let head = nn::linear(&root / "head", 32, vocab, Default::default());
    (vs, nn::seq().add(emb).add(head))
}

/// Sequences following t_{i+1} = (t_i + 3) mod base from random starts.
fn batch(step: u64, base: i64) -> (Tensor, Tensor) {
    let starts = (Tensor::arange(8, (Kind::Int64, Device::Cpu)) * (step as i64 % 7 + 1)).remainder(base);
    let seq = (starts.unsqueeze(1) + Tensor::arange(33, (Kind::Int64, Device::Cpu)).unsqueeze(0) * 3).remainder(base);
    (seq.narrow(1, 0, 32).contiguous(), seq.narrow(1, 1, 32).contiguous())
}

#[test]
fn toy_model_trains_through_the_api_with_mir_and_zloss() {
    let base = 60;
    let reqs = vec![
        RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::json!({"lambda": 0.4})),
        RegularizerRequest::new(&declared("dctk_plugin_zloss"), serde_json::Value::Null),
    ];
    let mut set = load_regularizers(&reqs, 1234).unwrap();
    assert_eq!(set.extra_vocab_tokens(), 1);
    set.check_vocab(base, 64).unwrap();
    assert!(set.check_vocab(base, 60).is_err());
    let manifest = set.manifest();
    assert_eq!(manifest.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mir", "zloss"]);
    assert!(manifest.iter().all(|r| r.blake3.len() == 64 && r.file.ends_with(".so")));
    assert_eq!(manifest[0].settings.as_ref().unwrap()["lambda"], serde_json::json!(0.4));

    let (vs, model) = toy_model(64);
    let mut opt = nn::Adam::default().build(&vs, 0.05).unwrap();
    let mut main_losses = Vec::new();
    let mut aux_losses = Vec::new();
    for step in 0..80u64 {
        let (x, y) = batch(step, base);
        let logits = model.forward(&x);
        let main = logits.view([-1, 64]).cross_entropy_for_logits(&y.view([-1]));
        let mb = MicroBatch { step, micro: 0, base_vocab: base, inputs: &x, targets: &y, hidden: Some(&logits) };
        let aux = set.aux_loss(&LogitsHead, &mb, &mut |ids| model.forward(ids)).unwrap();
        let names: Vec<&str> = aux.metrics.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["mir/aux_loss", "mir/mask_rate", "zloss/z2"]);
        let rate = aux.metrics[1].1;
        assert!((0.0..=0.5).contains(&rate), "mask rate {rate}");
        aux_losses.push(aux.metrics[0].1);
        main_losses.push(main.double_value(&[]));
        let total = &main + aux.loss.unwrap();
        opt.zero_grad();
        total.backward();
        opt.step();
    }
    let (first, last) = (main_losses[0], *main_losses.last().unwrap());
    assert!(last < 0.2 * first, "main loss did not fall: {first} -> {last}");
    let aux_first: f64 = aux_losses[..5].iter().sum::<f64>() / 5.0;
    let aux_last: f64 = aux_losses[aux_losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(aux_last < aux_first, "aux loss did not fall: {aux_first} -> {aux_last}");
    assert!(aux_losses.iter().all(|v| v.is_finite()));
}

#[test]
fn mir_masks_reproduce_from_seed_step_micro() {
    let mir = declared("dctk_plugin_mir");
    let (_vs, model) = toy_model(64);
    let (x, y) = batch(0, 60);
    let run = |seed: u64, step: u64, micro: u64| {
        let mut set = load_regularizers(&[RegularizerRequest::new(&mir, serde_json::Value::Null)], seed).unwrap();
        let mb = MicroBatch { step, micro, base_vocab: 60, inputs: &x, targets: &y, hidden: None };
        let m = set.aux_loss(&LogitsHead, &mb, &mut |ids| model.forward(ids)).unwrap().metrics;
        (m[0].1, m[1].1)
    };
    assert_eq!(run(1, 5, 0), run(1, 5, 0));
    assert_ne!(run(1, 5, 0), run(1, 5, 1));
    assert_ne!(run(1, 5, 0), run(2, 5, 0));
}

#[test]
fn requests_parse_from_a_name_or_a_map() {
    let r: Vec<RegularizerRequest> =
        serde_json::from_value(serde_json::json!(["mir", {"name": "zloss", "settings": {"weight": 0.001}}, {"name": "mir"}])).unwrap();
    assert_eq!(r[0], RegularizerRequest::new("mir", serde_json::Value::Null));
    assert_eq!(r[1], RegularizerRequest::new("zloss", serde_json::json!({"weight": 0.001})));
    assert_eq!(r[2].settings, serde_json::Value::Null);
    assert!(serde_json::from_value::<RegularizerRequest>(serde_json::json!({"name": "mir", "lambda": 1})).is_err());
    assert!(serde_json::from_value::<RegularizerRequest>(serde_json::json!(3)).is_err());
    // validate_regularizers checks without instantiating and reports what the manifest records.
    let recs = validate_regularizers(&[RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::json!({"lambda": 0.1}))]).unwrap();
    assert_eq!(recs[0].settings.as_ref().unwrap()["lambda"], serde_json::json!(0.1));
    assert!(validate_regularizers(&[RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::json!({"x": 1}))]).is_err());
}

#[test]
fn build_version_mismatch_names_the_field_and_the_fix() {
    let host = unsafe { loader::BuildVersions::read(&dctk_plugin_sdk::build_info()) };
    assert_eq!(loader::compare_builds(&host, &host.clone()), Ok(()));
    let other = loader::BuildVersions { rustc: "rustc 1.80.0 (old)".into(), ..host.clone() };
    let e = loader::compare_builds(&host, &other).unwrap_err();
    assert!(e.contains("rustc version `rustc 1.80.0 (old)`") && e.contains(&host.rustc) && e.contains("same toolchain"), "{e}");
    let other = loader::BuildVersions { libtorch: "2.0.0+cpu".into(), ..host.clone() };
    let e = loader::compare_builds(&host, &other).unwrap_err();
    assert!(e.contains("libtorch version `2.0.0+cpu`") && e.contains("LIBTORCH"), "{e}");
    let other = loader::BuildVersions { tch: "0.23.0".into(), ..host.clone() };
    let e = loader::compare_builds(&host, &other).unwrap_err();
    assert!(e.contains("tch version `0.23.0`") && e.contains("tch =0.24.0"), "{e}");
}

/// dctk's own GPT (padded GPT-2 vocabulary) trained a few steps with MIR through
/// the trainer-facing API: MASK = 50,257 fits without resizing, the masked pass
/// sees exactly that id, the first 8 positions stay clean, and the loss falls.
#[test]
fn dctk_gpt_trains_with_mir_and_logs_the_aux_loss() {
    use crate::train::model::{GPT2_PADDED_VOCAB, GPT2_VOCAB};
    use crate::train::{Gpt, ModelConfig};
    let mut set = load_regularizers(&[RegularizerRequest::new(&declared("dctk_plugin_mir"), serde_json::Value::Null)], 7).unwrap();
    set.check_vocab(GPT2_VOCAB, GPT2_PADDED_VOCAB).unwrap();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs, &ModelConfig::new(1, 32, 4, GPT2_PADDED_VOCAB, 32), 0.0);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let (mut first, mut last, mut aux_seen) = (0.0, 0.0, Vec::new());
    for step in 0..20u64 {
        // A cyclic pattern over ids 1000..1040: learnable from the previous token.
        let (x, y) = batch(step, 40);
        let (x, y) = (x + 1000, y + 1000);
        let hidden = model.forward_hidden(&x, None, true);
        let main = model.head_loss(&hidden, &y);
        let mut saw_mask = false;
        let mut forward = |ids: &Tensor| {
            let max = ids.max().int64_value(&[]);
            assert!(max <= GPT2_VOCAB, "id {max} beyond MASK");
            saw_mask |= max == GPT2_VOCAB;
            assert!(ids.narrow(1, 0, 8).max().int64_value(&[]) < GPT2_VOCAB, "a position < 8 was masked");
            model.forward_hidden(ids, None, true)
        };
        let mb = MicroBatch { step, micro: 0, base_vocab: GPT2_VOCAB, inputs: &x, targets: &y, hidden: Some(&hidden) };
        let aux = set.aux_loss(&model, &mb, &mut forward).unwrap();
        assert!(saw_mask, "the masked pass never saw MASK = {GPT2_VOCAB}");
        aux_seen.push(aux.metrics.iter().find(|(k, _)| k == "mir/aux_loss").unwrap().1);
        let total = &main + aux.loss.unwrap();
        opt.zero_grad();
        total.backward();
        opt.step();
        let v = main.double_value(&[]);
        if step == 0 {
            first = v;
        }
        last = v;
    }
    eprintln!("dctk gpt + mir: loss {first:.3} -> {last:.3}, mir/aux_loss {:.3} -> {:.3}", aux_seen[0], aux_seen.last().unwrap());
    assert!(last < 0.7 * first, "loss did not fall: {first} -> {last}");
    assert!(aux_seen.iter().all(|v| v.is_finite()) && aux_seen.last().unwrap() < &aux_seen[0], "{aux_seen:?}");
}

/// With a tokenizer of 50,280 ids (between GPT-2's 50,257 and the padded 50,304), MIR's MASK
/// is the first id past the tokenizer's, 50,280, as the vocabulary layout numbers it: the
/// masked pass sees each position either unchanged or as MASK, never another id, and no real
/// token (the top one, 50,279, included) is ever read as MASK.
#[test]
fn mir_mask_is_the_first_id_after_the_tokenizers() {
    use crate::train::model::VocabLayout;
    let mir = declared("dctk_plugin_mir");
    let requests = [RegularizerRequest::new(&mir, serde_json::Value::Null)];
    let layout = VocabLayout::new(50_280, &crate::plugin::regularizer::regularizer_extra_tokens(&requests).unwrap());
    assert_eq!((layout.extra[0].first_id, layout.padded), (50_280, 50_304));
    let mut set = load_regularizers(&requests, 3).unwrap();
    set.check_vocab(layout.base, layout.padded).unwrap();
    // Real ids near the top of the tokenizer: 50,200 ..= 50,279.
    let x = Tensor::randint_low(50_200, 50_280, [4, 64], (Kind::Int64, Device::Cpu));
    let y = x.shallow_clone();
    let mut masked_any = false;
    for step in 0..4u64 {
        let mb = MicroBatch { step, micro: 0, base_vocab: layout.base, inputs: &x, targets: &y, hidden: None };
        let mut forward = |ids: &Tensor| {
            let changed = ids.ne_tensor(&x);
            let mask_id = ids.eq(layout.extra[0].first_id);
            assert!(changed.eq_tensor(&mask_id).all().int64_value(&[]) == 1, "a position changed to something other than MASK");
            assert_eq!(x.eq(layout.extra[0].first_id).sum(Kind::Int64).int64_value(&[]), 0);
            masked_any |= mask_id.any().int64_value(&[]) == 1;
            Tensor::zeros([ids.size()[0], ids.size()[1], layout.padded], (Kind::Float, Device::Cpu)).set_requires_grad(true)
        };
        set.aux_loss(&LogitsHead, &mb, &mut forward).unwrap();
    }
    assert!(masked_any, "MIR never masked a position");
}
