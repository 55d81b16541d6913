//! Bundles: `dctk export` writes a study another lab can rerun, and `dctk run` on a
//! bundle checks every cell against it.
//!
//! The bundle holds the study script and every script it imports (same relative layout),
//! `bundle.ron` (each cell's label, id and named inputs; each plugin's name, version and
//! library hash; each corpus's data manifest: tokenizer, domains, subset hashes), the
//! results table, the plugins' sources when they are found in the workspace that built
//! them, the study's report (`report.html`, when the study has run), and a README saying what
//! data to provide. Data itself is not copied: the other
//! lab provides it and points `--data-root` at it. `dctk run` on the bundle compares each
//! cell with `bundle.ron` and says exactly which inputs differ (data, plugin, version,
//! setting) before anything runs ([`report_bundle_differences`]).
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::inputs::diff;
use super::records::{PlannedCell, Table};
use super::session::{plan_record, results_table};
use super::rounds::RoundEnd;
use super::session::Session;
use super::write_ron_atomic;
use crate::corpus::DataManifest;
use crate::plugin::PluginRecord;

/// `bundle.ron`: what the exporting lab ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub dctk_version: String,
    pub script: String,
    pub imports: Vec<String>,
    pub cells: Vec<PlannedCell>,
    pub plugins: Vec<PluginRecord>,
    /// Data manifests by fingerprint (paths are the exporting machine's, for reference).
    pub data: BTreeMap<String, DataManifest>,
    /// True when the plan stopped at a pending result: later cells are not listed.
    pub incomplete: bool,
}

/// Writes the bundle of the planned study `s` (its script `script`) into `out`, which
/// must not exist: first into a temporary directory, then renamed, so there is never a
/// half-written bundle. Returns what it holds.
pub fn export(s: &Session, script: &Path, end: &RoundEnd, out: &Path) -> Result<Bundle> {
    let study_dir = s.opts.sandbox.study_dir.clone();
    let record = plan_record(s);
    // Write into a temporary directory, then rename: never a half-written bundle.
    let tmp = out.with_file_name(format!(".{}.tmp-{}", out.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let script_name = script.file_name().unwrap().to_string_lossy().to_string();
    fs::copy(&script, tmp.join(&script_name)).with_context(|| format!("copying {}", script.display()))?;
    let mut imports = Vec::new();
    for file in s.imports.lock().unwrap().iter() {
        let rel = file.strip_prefix(&study_dir).unwrap_or(file.as_path());
        if rel.is_absolute() {
            // Imported from a data root: not part of the study's own tree.
            continue;
        }
        let dest = tmp.join(rel);
        fs::create_dir_all(dest.parent().unwrap())?;
        fs::copy(file, &dest).with_context(|| format!("copying {}", file.display()))?;
        imports.push(rel.display().to_string());
    }

    let mut plugins: Vec<PluginRecord> = Vec::new();
    let mut data = BTreeMap::new();
    for e in s.cells.lock().unwrap().values() {
        // Generation cells name their source by fingerprint; their corpus is regenerated.
        let Some(c) = e.cell.as_train() else { continue };
        data.entry(c.data.manifest.fingerprint.clone()).or_insert_with(|| c.data.manifest.clone());
        for p in &c.plugins {
            if !plugins.iter().any(|q| q.name == p.name && q.blake3 == p.blake3) {
                plugins.push(p.clone());
            }
        }
    }
    let mut plugin_notes = Vec::new();
    for p in &plugins {
        match plugin_source(Path::new(&p.file)) {
            Some(src) => {
                copy_tree(&src, &tmp.join("plugins").join(&p.name))?;
                plugin_notes.push(format!("- `{}` {} (library blake3 {}): source in `plugins/{}/`", p.name, p.version, p.blake3, p.name));
            }
            None => plugin_notes.push(format!(
                "- `{}` {} (library blake3 {}): source not found beside {}; obtain it from its authors",
                p.name, p.version, p.blake3, p.file
            )),
        }
    }

    let table = results_table(s);
    table.write(&tmp.join("results.csv"))?;
    let bundle = Bundle {
        dctk_version: crate::env::DCTK_VERSION.into(),
        script: script_name.clone(),
        imports,
        cells: record.cells.iter().map(|c| PlannedCell { inputs: record.inputs(c), ..c.clone() }).collect(),
        plugins,
        data: data.clone(),
        incomplete: matches!(end, RoundEnd::Barrier(..)),
    };
    write_ron_atomic(&tmp.join("bundle.ron"), &bundle)?;
    let mut readme = format!(
        "# dctk study bundle: {script_name}\n\nExported by dctk {} with {} cell(s){}.\n\n\
         Rerun it with the same data:\n\n    dctk run {script_name} --data-root DIR\n\n\
         `dctk run` compares every cell with `bundle.ron` and prints which inputs differ.\n\n## Data to provide\n\n",
        crate::env::DCTK_VERSION,
        bundle.cells.len(),
        if bundle.incomplete { " (the plan stopped at a pending result; later cells are not listed)" } else { "" }
    );
    for d in data.values() {
        readme.push_str(&format!("- tokenizer {}, fingerprint {}:\n", d.tokenizer, d.fingerprint));
        for dom in &d.domains {
            readme.push_str(&format!("  - domain `{}`: {} unique tokens (subset {})\n", dom.name, dom.unique_tokens, dom.subset_fingerprint));
        }
    }
    readme.push_str("\n## Plugins\n\n");
    for n in &plugin_notes {
        readme.push_str(n);
        readme.push('\n');
    }
    // The results as a page anyone opens without dctk: the study's report as its cells are now.
    let record_dir = super::records::study_dir(&s.opts.runs_root, script);
    if record_dir.join(super::records::RUN_PLAN).is_file() {
        match crate::report::write_report(&record_dir, &s.opts.runs_root, &tmp.join("report.html"), None) {
            Ok(_) => readme.push_str("\n## Results\n\n`report.html`: the study's report (cells, curves, fits) as exported; open it in any browser.\n"),
            Err(e) => eprintln!("warning: the bundle has no report.html: {e:#}"),
        }
    }
    fs::write(tmp.join("README.md"), readme)?;
    fs::rename(&tmp, &out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(bundle)
}

/// The crate sources of a plugin library `…/target/<profile>/lib<name>.so`: the package
/// under `<workspace>/plugins/*/` whose `[lib] name` is `<name>`; else the crate a
/// `dctk plugin new` scaffold built it from (see [`crate::plugin::source`]).
fn plugin_source(lib: &Path) -> Option<PathBuf> {
    workspace_plugin_source(lib).or_else(|| crate::plugin::source::built_crate_dir(lib))
}

/// The package under `<workspace>/plugins/*/` whose `[lib] name` is the library's.
fn workspace_plugin_source(lib: &Path) -> Option<PathBuf> {
    let stem = lib.file_stem()?.to_string_lossy().trim_start_matches("lib").to_string();
    let workspace = lib.ancestors().find(|a| a.file_name().is_some_and(|n| n == "target"))?.parent()?;
    for entry in fs::read_dir(workspace.join("plugins")).ok()?.flatten() {
        let manifest = fs::read_to_string(entry.path().join("Cargo.toml")).unwrap_or_default();
        if manifest.contains(&format!("name = \"{stem}\"")) {
            return Some(entry.path());
        }
    }
    None
}

/// Copies a plugin crate's `Cargo.toml`, `build.rs`, `README.md` and `src/`.
fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    for entry in fs::read_dir(src)?.flatten() {
        let name = entry.file_name();
        let path = entry.path();
        let n = name.to_string_lossy();
        if path.is_dir() && n == "src" {
            copy_dir(&path, &dest.join(&name))?;
        } else if path.is_file() && matches!(n.as_ref(), "Cargo.toml" | "build.rs" | "README.md") {
            fs::copy(&path, dest.join(&name))?;
        }
    }
    Ok(())
}

fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    for entry in fs::read_dir(src)?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &dest.join(entry.file_name()))?;
        } else {
            fs::copy(&path, dest.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// When the study directory holds a `bundle.ron`, says for every planned cell whose id
/// differs from the bundle's cell of the same label exactly which inputs differ.
pub fn report_bundle_differences(s: &Session) {
    let path = s.opts.sandbox.study_dir.join("bundle.ron");
    let Ok(text) = fs::read_to_string(&path) else { return };
    let bundle: Bundle = match ron::from_str(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("warning: {}: cannot read the bundle record: {e}", path.display());
            return;
        }
    };
    let cells = s.cells.lock().unwrap();
    let (mut same, mut differ) = (0, 0);
    for e in cells.values() {
        let Some(theirs) = bundle.cells.iter().find(|c| c.label == e.cell.label()) else { continue };
        if theirs.id == e.cell.id() {
            same += 1;
            continue;
        }
        differ += 1;
        eprintln!("cell {}: inputs differ from the bundle ({} there, {} here):", e.cell.label(), theirs.id, e.cell.id());
        let changes = diff(&theirs.inputs, e.cell.inputs());
        for ch in &changes {
            eprintln!("    {ch}");
        }
        // Different data: say which domains differ, from the bundle's data manifest.
        let Some(train) = e.cell.as_train() else { continue };
        let ours = &train.data.manifest;
        if let Some(their_data) = theirs.inputs.0.get("data.fingerprint").and_then(|fp| bundle.data.get(fp)) {
            if their_data.fingerprint != ours.fingerprint {
                for d in &ours.domains {
                    match their_data.domains.iter().find(|t| t.name == d.name) {
                        None => eprintln!("    data domain {}: not in the bundle", d.name),
                        Some(t) if t.subset_fingerprint != d.subset_fingerprint || t.unique_tokens != d.unique_tokens => eprintln!(
                            "    data domain {}: {} unique tokens, subset {} there; {} unique tokens, subset {} here",
                            d.name,
                            t.unique_tokens,
                            &t.subset_fingerprint[..16.min(t.subset_fingerprint.len())],
                            d.unique_tokens,
                            &d.subset_fingerprint[..16.min(d.subset_fingerprint.len())]
                        ),
                        Some(_) => {}
                    }
                }
                if their_data.tokenizer != ours.tokenizer {
                    eprintln!("    tokenizer: {} there, {} here", their_data.tokenizer, ours.tokenizer);
                }
            }
        }
    }
    if differ == 0 {
        eprintln!("bundle check: all {same} cell(s) planned so far have the bundle's exact inputs");
    } else {
        eprintln!("bundle check: {differ} cell(s) differ from the bundle, {same} match; their numbers will not be the bundle's");
    }
}

/// After a rerun in a bundle's directory: how this run's results compare with the
/// bundle's `results.csv`, number by number, for the cells both have (matched by label).
/// Equal files mean bitwise-equal numbers (floats are written in shortest round-trip
/// form); otherwise the largest relative difference is named, never implied away.
/// `None` when the study directory holds no bundle.
pub fn compare_with_bundle(study_dir: &Path, here: &Table) -> Option<String> {
    if !study_dir.join("bundle.ron").is_file() {
        return None;
    }
    let path = study_dir.join("results.csv");
    let theirs = match read_table(&path) {
        Ok(t) => t,
        Err(e) => return Some(format!("bundle results: cannot read {}: {e:#}", path.display())),
    };
    Some(compare_tables(&theirs, here))
}

fn read_table(path: &Path) -> Result<Table> {
    let mut r = csv::Reader::from_path(path)?;
    let columns = r.headers()?.iter().map(str::to_string).collect();
    let rows = r.records().map(|rec| Ok(rec?.iter().map(str::to_string).collect())).collect::<Result<Vec<Vec<String>>>>()?;
    Ok(Table { columns, rows })
}

/// The comparison of [`compare_with_bundle`], over two tables.
pub fn compare_tables(theirs: &Table, here: &Table) -> String {
    let col = |t: &Table, name: &str| t.columns.iter().position(|c| c == name);
    let (Some(their_label), Some(our_label)) = (col(theirs, "label"), col(here, "label")) else {
        return "bundle results: no label column to match cells by".into();
    };
    // The measured numbers (settings and counts are compared by the bundle's input check).
    let measured = |c: &str| c.ends_with("_loss") || c.starts_with("val_loss.");
    let (mut compared, mut differing, mut cells) = (0usize, 0usize, 0usize);
    let mut worst: Option<(f64, String)> = None;
    for row in &here.rows {
        let Some(their_row) = theirs.rows.iter().find(|r| r.get(their_label) == row.get(our_label)) else { continue };
        cells += 1;
        for (i, name) in here.columns.iter().enumerate().filter(|(_, c)| measured(c)) {
            let Some(j) = col(theirs, name) else { continue };
            let (Some(a), Some(b)) = (their_row.get(j), row.get(i)) else { continue };
            let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) else { continue };
            compared += 1;
            if a == b {
                continue;
            }
            differing += 1;
            let rel = if x.is_finite() && y.is_finite() { (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE) } else { f64::INFINITY };
            if worst.as_ref().is_none_or(|(w, _)| rel > *w) {
                worst = Some((rel, format!("{name} of {}: {a} in the bundle, {b} here", row[our_label])));
            }
        }
    }
    match worst {
        None if compared == 0 => "bundle results: no cell of this run is in the bundle's results.csv".into(),
        None => format!("bundle results: all {compared} numbers of {cells} cell(s) equal the bundle's bit for bit"),
        Some((rel, at)) => format!(
            "bundle results: {differing} of {compared} numbers of {cells} cell(s) differ from the bundle's; largest relative difference {rel:.3e} ({at})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[&str; 3]]) -> Table {
        Table {
            columns: vec!["label".into(), "steps".into(), "final_val_loss".into()],
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn equal_results_are_bitwise_and_differences_are_named() {
        let theirs = table(&[["a", "10", "6.902597291128976"], ["b", "10", "6.5"]]);
        let same = compare_tables(&theirs, &table(&[["a", "10", "6.902597291128976"], ["b", "10", "6.5"]]));
        assert!(same.contains("all 2 numbers of 2 cell(s) equal the bundle's bit for bit"), "{same}");
        let off = compare_tables(&theirs, &table(&[["a", "10", "6.902608"], ["b", "10", "6.5"], ["c", "1", "1"]]));
        assert!(off.contains("1 of 2 numbers") && off.contains("final_val_loss of a") && off.contains("1.551e-6"), "{off}");
        let none = compare_tables(&theirs, &table(&[["z", "1", "1"]]));
        assert!(none.contains("no cell"), "{none}");
    }
}
