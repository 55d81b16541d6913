//! The study layer, in the order of the data flow:
//!
//! - [`plan`]: a script's `train` settings → a cell (id from its named [`inputs`], manifest);
//!   [`generate_cell`]: a script's `generate` settings → a generation cell, whose output is a
//!   corpus domain; [`cell`]: a planned cell of either kind;
//! - [`cache`]: which cells are done, failed, resumable or busy, and what a plan reuses
//!   (locks: [`lock`]);
//! - [`session`]: the cells one invocation planned; [`rounds`]: the loop that runs the
//!   script, executes what it planned and runs it again;
//! - [`execute`]: executors (local processes now; cluster next); [`exec_cell`]: what one
//!   cell process does;
//! - [`records`]: the last plan and the results table; [`bundle`]: export and bundle check;
//! - [`sandbox`]: which paths a study may touch.
//!
//! A cell's id is a hash of everything that decides its numbers ([`inputs`]); the cell
//! lives in `runs/<id>/`:
//!
//! ```text
//! runs/<id>/
//!   manifest.ron    label, resolved spec, inputs, data manifest, versions: all it takes to rerun
//!   manifest.json   its JSON twin (as result.json of result.ron), for Python and jq
//!   status          running | done | failed | diverged
//!   lock            flock held by the process training the cell
//!   metrics.jsonl   one JSON object per logged train step or evaluation
//!   ckpt/           latest checkpoint (model.safetensors, optim.safetensors, state.ron)
//!   log.txt         the cell process's stderr
//!   error.txt       why it failed, if it did
//!   result.ron      the run's results, written last
//! runs/studies/<study>/
//!   plan.json       the cells of the last plan that was run, with their inputs: "why did this id change?"
//!   last-plan.json  the cells of the last `dctk plan` (diffed against before any run)
//!   results.csv     one row per cell of the last complete `dctk run`
//! ```
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

pub mod bundle;
pub mod cache;
pub mod cell;
#[cfg(feature = "torch")]
pub mod exec_cell;
pub mod execute;
pub mod generate_cell;
pub mod inputs;
pub mod lock;
pub mod plan;
pub mod records;
pub mod rounds;
pub mod sandbox;
pub mod session;

/// The last line of a JSON-lines file that parses and satisfies `keep`, read from the
/// file's last 4 kB (a progress or metrics file of a running cell: its end is what is new).
pub fn last_json_line(path: &Path, keep: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).ok()?;
    tail.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok().filter(|v| keep(v)))
}

/// Writes `bytes` to `path` atomically and durably (the one implementation: [`dctk_fs::write_atomic`]).
/// Creates the parent directory first (study records live in directories made on demand).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    Ok(dctk_fs::write_atomic(path, bytes)?)
}

/// Pretty RON, the format of manifests and results (readable, diffable, serde).
pub fn to_ron<T: Serialize>(value: &T) -> Result<String> {
    Ok(ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default().struct_names(true))?)
}

pub fn write_ron_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, to_ron(value)?.as_bytes())
}

/// A cell record (`manifest.ron`, `result.ron`) and its JSON twin beside it
/// (`manifest.json`, `result.json`: the same fields, for readers without a RON parser;
/// non-finite numbers are `null`), each written atomically. The RON file is the one dctk
/// reads back.
pub fn write_record<T: Serialize>(ron_path: &Path, value: &T) -> Result<()> {
    write_ron_atomic(ron_path, value)?;
    write_atomic(&ron_path.with_extension("json"), &serde_json::to_vec_pretty(value)?)
}

/// A short content id: the first 16 hex digits of blake3 over the given parts.
pub fn content_id(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..16].to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Done,
    Failed,
    Diverged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
        }
    }

    pub fn read(run_dir: &Path) -> Option<Status> {
        match fs::read_to_string(run_dir.join("status")).ok()?.trim() {
            "running" => Some(Status::Running),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            "diverged" => Some(Status::Diverged),
            _ => None,
        }
    }

    pub fn write(self, run_dir: &Path) -> Result<()> {
        write_atomic(&run_dir.join("status"), format!("{}\n", self.as_str()).as_bytes())
    }
}

/// `runs/<id>`: a cell's directory is named by its content id alone, so renaming a
/// cell in a script never recomputes it.
pub fn run_dir(runs_root: &Path, id: &str) -> PathBuf {
    runs_root.join(id)
}

/// A name made filesystem-safe (for study directories).
pub fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_specs_round_trip_through_ron_manifests() {
        // A cell process reads its spec back from manifest.ron: every form must survive.
        let spec = crate::train::TrainSpec::from_json(serde_json::json!({
            "corpus": "data:c", "unique_tokens": 1000, "epochs": 2.5, "name": "x",
            "regularizers": ["mir", {"name": "zloss", "settings": {"coef": 1e-4}}],
            "domains": {"a": {"weight": 2.0}, "b": {"unique_tokens": 10, "epochs_limit": 1}},
            "schedule_mix": [{"step": 0, "weights": {"a": 1.0, "b": 1.0}}, {"step": 5, "weights": {"a": 1.0, "b": 3.0}}],
        }))
        .unwrap();
        let back: crate::train::TrainSpec = ron::from_str(&to_ron(&spec).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), serde_json::to_value(&back).unwrap());
    }

    #[test]
    fn ids_depend_on_every_part_and_boundaries() {
        assert_ne!(content_id(&[b"ab", b"c"]), content_id(&[b"a", b"bc"]));
        assert_eq!(content_id(&[b"x"]), content_id(&[b"x"]));
        assert_eq!(run_dir(Path::new("runs"), "abc"), PathBuf::from("runs/abc"));
        assert_eq!(safe_name("my run/1"), "my_run_1");
    }
}
