//! A planned cell of either kind: training ([`TrainCell`], `study/plan.rs`) or generation
//! ([`GenerateCell`], `study/generate_cell.rs`). Sessions, rounds, records and executors
//! handle cells through this one type; what differs by kind is planning, the manifest and
//! what `dctk cell exec` does with it.
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::generate_cell::GenerateCell;
use super::inputs::CellInputs;
use super::plan::TrainCell;

pub enum Cell {
    Train(TrainCell),
    Generate(GenerateCell),
}

impl Cell {
    pub fn id(&self) -> &str {
        match self {
            Cell::Train(c) => &c.id,
            Cell::Generate(c) => &c.id,
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Cell::Train(c) => &c.label,
            Cell::Generate(c) => &c.label,
        }
    }

    pub fn dir(&self) -> &Path {
        match self {
            Cell::Train(c) => &c.dir,
            Cell::Generate(c) => &c.dir,
        }
    }

    pub fn dir_buf(&self) -> PathBuf {
        self.dir().to_path_buf()
    }

    pub fn inputs(&self) -> &CellInputs {
        match self {
            Cell::Train(c) => &c.inputs,
            Cell::Generate(c) => &c.inputs,
        }
    }

    /// "train" or "generate".
    pub fn kind(&self) -> &'static str {
        match self {
            Cell::Train(_) => "train",
            Cell::Generate(_) => "generate",
        }
    }

    pub fn as_train(&self) -> Option<&TrainCell> {
        match self {
            Cell::Train(c) => Some(c),
            Cell::Generate(_) => None,
        }
    }

    pub fn as_generate(&self) -> Option<&GenerateCell> {
        match self {
            Cell::Generate(c) => Some(c),
            Cell::Train(_) => None,
        }
    }

    /// The planning study's `threads` for this cell (training cells only).
    pub fn threads(&self) -> Option<i32> {
        self.as_train().and_then(|c| c.spec.threads)
    }

    /// Training FLOPs (0 for a generation cell).
    pub fn flops(&self) -> f64 {
        self.as_train().map_or(0.0, |c| c.flops)
    }

    /// Writes the cell's manifest (before it first runs).
    pub fn materialize(&self) -> Result<()> {
        match self {
            Cell::Train(c) => super::plan::materialize(c),
            Cell::Generate(c) => super::generate_cell::materialize(c),
        }
    }
}
