//! Executing one cell from its `manifest.ron` (what a `dctk cell exec` process does,
//! here or as one task of a job array): lock it, re-resolve and check its inputs, write
//! status `running`, train (resuming from its checkpoint), then write `result.ron`, the
//! final status and the sampler's accounting. Failures write `error.txt` and status
//! `failed`; a run stopped on request stays resumable. A generation cell (its manifest
//! is `GenerateManifest(…)`) is executed by [`super::generate_cell::execute`] under the
//! same lock, status and error protocol.
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::generate_cell::GenerateManifest;

use super::cache::{CellBusy, CellState};
use super::lock::CellLock;
use super::plan::Manifest;
use super::{write_atomic, write_record, Status};
use crate::corpus::DataCache;
use crate::train::trainer;
use crate::corpus::DataManifest;
use crate::env;
use crate::train::trainer::{precision_name, resolve_placement};
use crate::train::{ExecOptions, RunResult, TrainSpec};

/// A manifest is a contract: before the first step, recompute the cell's named inputs on
/// this machine (plugin libraries found here, device and precision resolved here, this
/// build's versions, the data as resolved here) and refuse to train under an id that
/// names other inputs. On another node of a job array, or after a rebuild, this is what
/// stops a cell from training code its id does not name.
fn verify_inputs(manifest: &Manifest, data: &DataManifest) -> Result<()> {
    let plugins = crate::plugin::regularizer::validate_regularizers(&manifest.spec.regularizers)?;
    let (device, kind) = resolve_placement(&manifest.spec)?;
    let device_kind = env::device_name(device).split(':').next().unwrap_or("cpu").to_string();
    let here = super::plan::named_inputs(&manifest.spec, data, &plugins, &device_kind, precision_name(kind), &env::versions())?;
    let changes = super::inputs::diff(&manifest.inputs, &here);
    if changes.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = changes
        .iter()
        .map(|c| match c {
            super::inputs::Change::Changed { name, before, after } => format!("  {name}: {before} (planned) → {after} (here)"),
            super::inputs::Change::Added { name, value } => format!("  {name}: (not planned) → {value} (here)"),
            super::inputs::Change::Removed { name, value } => format!("  {name}: {value} (planned) → (absent here)"),
        })
        .collect();
    bail!(
        "cell {} ({}): refused: this machine's inputs differ from the ones its id names, so it would train other code or data than planned:\n{}\n\
         rerun the study here to plan the cell again (a new id)",
        manifest.label,
        manifest.run_id,
        lines.join("\n")
    )
}

/// What `manifest.ron` says the cell is: a generation manifest is `GenerateManifest(…)`
/// (records are written with struct names), a training one `Manifest(…)`.
fn is_generate_manifest(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').trim_start().starts_with("GenerateManifest(")
}

/// Executes the cell in `dir` (see the module doc).
pub fn execute(dir: &Path, opts: &ExecOptions) -> Result<()> {
    let _lock = CellLock::acquire(dir)?.ok_or_else(|| CellBusy(CellLock::holder(dir).unwrap_or_default()))?;
    if CellState::read(dir).is_finished() {
        // Another process finished it (while `dctk run` waited for its lock): say so, so
        // that run reports it as waited for, not as run here.
        if opts.progress_json {
            println!("{}", serde_json::json!({"event": "already_finished"}));
        }
        return Ok(());
    }
    let path = dir.join("manifest.ron");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let result = if is_generate_manifest(&text) { execute_generate(dir, &text, opts) } else { execute_locked(dir, &text, opts).map(|_| ()) };
    if let Err(e) = &result {
        if e.downcast_ref::<trainer::StoppedEarly>().is_none() {
            let _ = write_atomic(&dir.join("error.txt"), format!("{e:#}\n").as_bytes());
            let _ = Status::Failed.write(dir);
        }
    }
    result
}

/// A generation cell: run it, then record its result and status (result first).
fn execute_generate(dir: &Path, text: &str, opts: &ExecOptions) -> Result<()> {
    let path = dir.join("manifest.ron");
    let manifest: GenerateManifest = ron::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
    let _ = fs::remove_file(dir.join("error.txt"));
    let result = super::generate_cell::execute(dir, &manifest, opts)?;
    write_record(&dir.join("result.ron"), &result)?;
    Status::Done.write(dir)
}

/// A training cell whose `manifest.ron` reads `text`.
fn execute_locked(dir: &Path, text: &str, opts: &ExecOptions) -> Result<RunResult> {
    let path = dir.join("manifest.ron");
    let manifest: Manifest = ron::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
    // Before any libtorch work: each CPU library reads its kernel setting once.
    crate::cpu::apply(manifest.spec.numerics).map_err(|e| anyhow::anyhow!("key \"numerics\": {e}"))?;
    let _ = fs::remove_file(dir.join("error.txt"));
    let runs_root = dir.parent().unwrap_or(Path::new("."));
    let synthetic: Vec<std::path::PathBuf> = manifest.synthetic_paths.iter().map(std::path::PathBuf::from).collect();
    let data_spec = manifest.spec.data_spec(Path::new(&manifest.corpus_path), &synthetic).map_err(anyhow::Error::msg)?;
    let data = DataCache::default().plan(&data_spec, runs_root, opts.progress)?;
    if data.manifest.fingerprint != manifest.data.fingerprint {
        bail!(
            "{}: the data changed since this cell was planned (fingerprint {} now, {} in the manifest); \
             rerun the study to plan it again",
            manifest.corpus_path,
            &data.manifest.fingerprint[..16],
            &manifest.data.fingerprint[..16.min(manifest.data.fingerprint.len())]
        );
    }
    verify_inputs(&manifest, &data.manifest)?;
    // `threads` is not in the id: this process's thread count is what `dctk cell exec
    // --threads` set (the executor passes the planning study's setting), never one frozen
    // into the manifest by whichever study planned the cell first.
    let spec = TrainSpec { threads: None, ..manifest.spec.clone() };
    Status::Running.write(dir)?;
    let result = trainer::train(&spec, &data, &manifest.run_id, dir, opts)?;
    // The trainer returns the result; the study records it: result.ron first, then the
    // status that says it is there.
    write_record(&dir.join("result.ron"), &result)?;
    let status = if result.status == Status::Diverged.as_str() { Status::Diverged } else { Status::Done };
    status.write(dir)?;
    let cpu = Some(crate::cpu::record(manifest.spec.numerics));
    let real_synthetic = Some(crate::train::RealSyntheticAccounting::of(&result.accounting, manifest.spec.mix_ratio));
    let manifest = Manifest { accounting: Some(result.accounting.clone()), real_synthetic, cpu, ..manifest };
    write_record(&path, &manifest)?;
    Ok(result)
}
