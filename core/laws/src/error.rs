//! Error type of the crate. Every failure a user can cause (bad CSV, unknown
//! column, non-positive sizes, bad law expression, too few points) is a
//! `LawError` with a message that names the column, row or parameter, so the
//! CLI and Rhai layers can print it as is. Nothing in this crate panics on
//! bad input.

use thiserror::Error;

/// All errors raised while loading data, building laws, fitting and reporting.
#[derive(Debug, Error)]
pub enum LawError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CSV {path}: {message}")]
    Csv { path: String, message: String },
    #[error("unknown column '{column}' (available: {available})")]
    UnknownColumn { column: String, available: String },
    /// `hint` is empty or a sentence starting with a space (e.g. how to read unit suffixes).
    #[error("column '{column}', row {row}: value {value:?} is not a number{hint}")]
    NotANumber { column: String, row: usize, value: String, hint: String },
    #[error("column '{column}', row {row}: value is NaN or infinite")]
    NonFinite { column: String, row: usize },
    #[error("column '{column}', row {row}: value {value} must be > 0 for law '{law}'")]
    NonPositive { column: String, row: usize, value: f64, law: String },
    #[error("row {row}: {message}")]
    BadRow { row: usize, message: String },
    #[error("too few points: {points} points for {params} free parameters (need more points than free parameters)")]
    TooFewPoints { points: usize, params: usize },
    #[error("bad column mapping '{spec}': {message}")]
    BadMapping { spec: String, message: String },
    #[error("unknown law '{name}' (built-in laws: {available})")]
    UnknownLaw { name: String, available: String },
    #[error("unknown parameter '{name}' for law '{law}' (parameters: {available})")]
    UnknownParam { name: String, law: String, available: String },
    #[error("parameter '{name}': {message}")]
    BadParam { name: String, message: String },
    #[error("law expression: {0}")]
    Expr(String),
    #[error("invalid option: {0}")]
    BadOption(String),
    #[error("fit failed: {0}")]
    FitFailed(String),
    #[error("plot {path}: {message}")]
    Plot { path: String, message: String },
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, LawError>;
