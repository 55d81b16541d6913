//! End-to-end training contracts: what `train(#{...})` promises holds through a real
//! `dctk run` (plan, manifest, cell process, result).
#[path = "support/mod.rs"]
mod support;
use support::*;

/// A custom model shape (with and without `d_ff`) plans, writes a manifest that reads back,
/// trains to done, and its parameter count is the shape's.
#[test]
fn custom_model_shapes_train_to_done() {
    let s = Scratch::new("shape");
    let script = s.write(
        "shape.rhai",
        r#"
let base = #{ corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 4, threads: 1 };
let a = base; a.name = "a"; a.model = #{ n_layer: 1, d_model: 64, n_head: 2 };
let b = base; b.name = "b"; b.model = #{ n_layer: 1, d_model: 64, n_head: 2, d_ff: 96 };
let runs = train([a, b]);
print(`statuses ${runs[0].status} ${runs[1].status}`);
print(`params ${runs[0].params} ${runs[1].params}`);
"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("statuses done done"), "{t}");
    // d_ff 96 instead of the default 256 (= 256·⌈(8·64/3)/256⌉): 3 matrices of 64 × 160 fewer.
    let params: Vec<i64> = t.lines().find_map(|l| l.strip_prefix("params ")).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(params[0] - params[1], 3 * 64 * (256 - 96), "{t}");
    for cell in cells(&s.path().join("runs")) {
        let manifest = std::fs::read_to_string(cell.join("manifest.ron")).unwrap();
        assert!(manifest.contains("\"n_layer\": 1") || manifest.contains("n_layer: 1"), "{manifest}");
    }
}
