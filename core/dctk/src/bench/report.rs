//! A synthetic study for `dctk bench report`: `cells` cell directories with the files a
//! real run leaves (status, manifest.json, result.json, metrics.jsonl with 7-domain
//! evaluations and logged steps), its study record (plan.json, results.csv) and one real
//! Chinchilla fit with a bootstrap (analyses.json), so the report does all its work: read
//! every cell, draw every chart, write the page.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::study::inputs::CellInputs;
use crate::study::records::{study_dir, PlanRecord, PlannedCell};

const DOMAINS: [&str; 7] = ["code", "dialogue", "docs", "literature", "math", "quotes", "reference"];

/// Chinchilla's published fit (Hoffmann et al. 2022, eq. 10 / approach 3).
fn chinchilla(n: f64, d: f64) -> f64 {
    1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28)
}

/// Writes the study under `dir` (`dir/study.rhai`, `dir/runs/`) and returns the script.
pub fn synthetic_study(dir: &Path, cells: usize, steps: u64) -> Result<PathBuf> {
    let script = dir.join("study.rhai");
    std::fs::write(&script, "// synthetic: written by `dctk bench report`\n")?;
    let runs = dir.join("runs");
    let record = study_dir(&runs, &script);
    std::fs::create_dir_all(&record)?;
    let sizes = [3e6, 6e6, 1.2e7, 2.5e7, 5e7];
    let lrs = [1e-3, 2e-3, 4e-3, 8e-3];
    let mut planned = Vec::with_capacity(cells);
    let mut csv = String::from("label,id,status,params,unique_tokens,epochs,final_val_loss,lr,model\n");
    let (mut fit_n, mut fit_d, mut fit_l) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cells {
        let (n, lr, epochs) = (sizes[i % sizes.len()], lrs[(i / sizes.len()) % lrs.len()], 1 + (i / 20) % 8);
        let unique = 20_000.0 * (1 + i % 3) as f64;
        let tokens_total = unique * epochs as f64;
        let id = format!("{:016x}", 0x5eed_0000_0000u64 + i as u64);
        let label = format!("synthetic/cell={i},lr={lr},model={n}");
        let status = if i % 97 == 13 { "failed" } else if i % 89 == 7 { "diverged" } else { "done" };
        let dir = crate::study::run_dir(&runs, &id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("status"), status)?;
        let final_loss = chinchilla(n, tokens_total) + 0.01 * ((i * 7919) % 13) as f64 / 13.0;
        let mut metrics = String::new();
        for s in 0..=steps {
            let tokens = tokens_total * s as f64 / steps as f64;
            let loss = chinchilla(n, tokens.max(1.0)).min(10.8);
            let lr_now = lr * (1.0 - s as f64 / steps as f64).max(0.01);
            if s > 0 {
                let _ = writeln!(metrics, "{}", json!({"kind":"train","step":s,"tokens":tokens,"loss":loss + 0.05,"lr":lr_now,"grad_norm":1.0,"tokens_per_s":5e4}));
            }
            if s % (steps / 8).max(1) == 0 || s == steps {
                let by: serde_json::Map<String, serde_json::Value> = DOMAINS.iter().enumerate().map(|(k, d)| (d.to_string(), json!(loss + 0.1 * k as f64))).collect();
                let _ = writeln!(metrics, "{}", json!({"kind":"eval","step":s,"tokens":tokens,"epoch":epochs as f64 * s as f64 / steps as f64,"val_loss":loss,"val_loss_by_domain":by}));
            }
        }
        std::fs::write(dir.join("metrics.jsonl"), metrics)?;
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&json!({"label": label, "spec": {"lr": lr, "epochs": epochs, "unique_tokens": unique}, "versions": {"dctk": env!("CARGO_PKG_VERSION"), "synthetic": true}}))?,
        )?;
        if status == "failed" {
            std::fs::write(dir.join("error.txt"), "synthetic failure: the cell's checkpoint was unreadable")?;
        } else {
            let by: serde_json::Map<String, serde_json::Value> = DOMAINS.iter().enumerate().map(|(k, d)| (d.to_string(), json!(final_loss + 0.1 * k as f64))).collect();
            let domains: Vec<serde_json::Value> = DOMAINS.iter().map(|d| json!({"name": d, "kind": "Real", "tokens_served": tokens_total / 7.0})).collect();
            let divergence = (status == "diverged").then(|| json!({"step": 3, "cause": "train loss"}));
            std::fs::write(
                dir.join("result.json"),
                serde_json::to_vec(&json!({
                    "status": status, "params": n, "unique_tokens": unique, "epochs": epochs, "steps": steps, "train_tokens": tokens_total,
                    "flops_per_token": 6.0 * n, "wall_s": 12.5, "final_val_loss": if status == "done" { json!(final_loss) } else { json!(null) },
                    "best_val_loss": final_loss, "final_val_loss_by_domain": by, "accounting": {"domains": domains}, "divergence": divergence,
                    "synthetic_tokens_seen": 0,
                }))?,
            )?;
        }
        if status == "done" && fit_n.len() < 200 {
            fit_n.push(n);
            fit_d.push(tokens_total);
            fit_l.push(final_loss);
        }
        let _ = writeln!(csv, "{label},{id},{status},{n},{unique},{epochs},{final_loss},{lr},{n}");
        let mut inputs = CellInputs::default();
        inputs.insert("spec.lr", lr.to_string());
        inputs.insert("spec.epochs", epochs.to_string());
        inputs.insert("spec.model", format!("\"m{n}\""));
        planned.push(PlannedCell { label, id, inputs, data_settings: Default::default() });
    }
    let plan = PlanRecord::from_cells(script.display().to_string(), planned);
    std::fs::write(record.join(crate::study::records::RUN_PLAN), serde_json::to_vec(&plan)?)?;
    std::fs::write(record.join("results.csv"), csv)?;
    // One real fit, as a study's `fit` call would record it.
    let points = dctk_laws::Points::from_columns(vec![("N".into(), fit_n), ("D".into(), fit_d)], fit_l)?;
    let law: Arc<dyn dctk_laws::LawForm> = dctk_laws::builtin("chinchilla", &dctk_laws::LawOptions::default())?;
    let opts = dctk_laws::FitOptions { bootstrap: Some(dctk_laws::BootstrapOptions { resamples: 20, seed: 1, level: 0.95 }), ..Default::default() };
    let fit = dctk_laws::fit(law, &points, &opts)?;
    let record_json = json!([{ "kind": "fit", "at": "study.rhai:1", "group": null, "report": fit.report, "predictions": [], "charts": crate::report::figures::fit_charts(&fit, None) }]);
    std::fs::write(record.join(crate::report::collect::ANALYSES), serde_json::to_vec(&record_json)?)?;
    Ok(script)
}
