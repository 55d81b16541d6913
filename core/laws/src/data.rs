//! Data input: the `Points` table a law is fitted to. It owns loading from CSV
//! with a column mapping (`N=params,D=tokens,loss=loss`, with derived columns
//! written as Rhai expressions such as `D=C/(6*N)`), construction from
//! in-memory rows (what the host passes for runs of a study), and the checks
//! that turn bad input into errors naming the column and the row.
//!
//! Cells that are not numbers (`ArXiv`, `2.8B`) make a *text column*, kept beside the
//! numeric ones: usable in a row filter ([`Points::filter_where`], a Rhai expression
//! such as `domain == "ArXiv" && N >= 1e8`) and for grouping ([`Points::groups`]), but
//! an error naming the column, row and value when a law reads it. Unit suffixes are read
//! as numbers only when asked ([`parse_number`] with `units`): k/K = 1e3, M = 1e6,
//! B/G = 1e9, T = 1e12, so `2.8B` is 2.8e9.
//!
//! Row numbers in errors are the 1-based data-row numbers of the source (the
//! CSV header is not counted), kept through filtering so an error after
//! `select` still points at the right line.

use crate::error::{LawError, Result};
use crate::law::{Inputs, LawForm};
use serde::{Deserialize, Serialize};

/// One entry of a column mapping: `name=source`, where `source` is a CSV
/// header or, failing that, a Rhai expression over names defined earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMapEntry {
    pub name: String,
    pub source: String,
}

/// A parsed column mapping such as `N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnMap {
    pub entries: Vec<ColumnMapEntry>,
}

fn starts_with_assignment(piece: &str) -> bool {
    // `name=` but not `==`: a new entry starts with an identifier and one '='.
    let Some(eq) = piece.find('=') else { return false };
    let name = piece[..eq].trim();
    let next_is_eq = piece[eq + 1..].starts_with('=');
    !name.is_empty()
        && !next_is_eq
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ColumnMap {
    /// Parse `a=x,b=y`. Commas inside an expression (`max(x, y)`) are kept:
    /// a piece that does not start with `name=` continues the previous entry.
    pub fn parse(spec: &str) -> Result<ColumnMap> {
        let mut entries: Vec<ColumnMapEntry> = Vec::new();
        if spec.trim().is_empty() {
            return Ok(ColumnMap::default());
        }
        for piece in spec.split(',') {
            if starts_with_assignment(piece) {
                let eq = piece.find('=').unwrap_or(0);
                let name = piece[..eq].trim().to_string();
                if entries.iter().any(|e| e.name == name) {
                    return Err(LawError::BadMapping {
                        spec: spec.into(),
                        message: format!("name '{name}' is mapped twice"),
                    });
                }
                entries.push(ColumnMapEntry { name, source: piece[eq + 1..].trim().to_string() });
            } else if let Some(last) = entries.last_mut() {
                last.source.push(',');
                last.source.push_str(piece);
            } else {
                return Err(LawError::BadMapping {
                    spec: spec.into(),
                    message: format!("'{piece}' is not of the form name=column"),
                });
            }
        }
        for e in &entries {
            if e.source.trim().is_empty() {
                return Err(LawError::BadMapping {
                    spec: spec.into(),
                    message: format!("'{}' has an empty source", e.name),
                });
            }
        }
        Ok(ColumnMap { entries })
    }
}

/// A table of named numeric columns plus the observed loss, one row per point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Points {
    /// Column names (law input names such as `N`, `D`, `U`, `x`).
    pub names: Vec<String>,
    /// Column values, `columns[j][i]` is column `names[j]` at row `i`.
    pub columns: Vec<Vec<f64>>,
    /// Observed loss per row.
    pub loss: Vec<f64>,
    /// 1-based source row number of each row (for error messages).
    pub rows: Vec<usize>,
    /// Where the points came from (file path or "memory").
    pub source: String,
    /// Names of the text columns (cells that are not all numbers), beside `names`.
    #[serde(default)]
    pub text_names: Vec<String>,
    /// Text column values, `text_columns[j][i]` is `text_names[j]` at row `i`.
    #[serde(default)]
    pub text_columns: Vec<Vec<String>>,
}

/// A cell as a number: plain (`1e9`, `2.5`), or with `units` a number followed by one
/// unit suffix, k/K = 1e3, M = 1e6, B/G = 1e9, T = 1e12 (`2.8B` = 2.8e9, `125M`).
/// `None` for anything else.
pub fn parse_number(cell: &str, units: bool) -> Option<f64> {
    let cell = cell.trim();
    if let Ok(x) = cell.parse::<f64>() {
        return Some(x);
    }
    if !units {
        return None;
    }
    let last = cell.chars().last()?;
    let scale = match last {
        'k' | 'K' => 1e3,
        'M' => 1e6,
        'B' | 'G' => 1e9,
        'T' => 1e12,
        _ => return None,
    };
    let number = cell[..cell.len() - last.len_utf8()].trim_end();
    // `inf`/`nan` spelled with a suffix are not sizes.
    number.parse::<f64>().ok().filter(|x| x.is_finite()).map(|x| x * scale)
}

/// The error for a text cell where a number is needed, with a hint when the cell would
/// read as a number with unit suffixes.
fn not_a_number(column: &str, row: usize, value: &str) -> LawError {
    let hint = if parse_number(value, true).is_some() { " (it has a unit suffix: pass --units, or units: true, to read k/K, M, B/G, T)" } else { "" };
    LawError::NotANumber { column: column.into(), row, value: value.into(), hint: hint.into() }
}

impl Points {
    /// Build from named columns and a loss column. All columns must have the
    /// loss column's length.
    pub fn from_columns(columns: Vec<(String, Vec<f64>)>, loss: Vec<f64>) -> Result<Points> {
        let n = loss.len();
        for (name, col) in &columns {
            if col.len() != n {
                return Err(LawError::BadOption(format!(
                    "column '{name}' has {} values but loss has {n}",
                    col.len()
                )));
            }
        }
        let (names, columns) = columns.into_iter().unzip();
        Ok(Points { names, columns, loss, rows: (1..=n).collect(), source: "memory".into(), text_names: vec![], text_columns: vec![] })
    }

    /// Build from in-memory records (one per run): each record is a list of
    /// `(name, value)` pairs and must contain `loss_key`. Every record must
    /// have the same names as the first one.
    pub fn from_records(records: &[Vec<(String, f64)>], loss_key: &str) -> Result<Points> {
        let Some(first) = records.first() else {
            return Err(LawError::TooFewPoints { points: 0, params: 0 });
        };
        let names: Vec<String> =
            first.iter().map(|(k, _)| k.clone()).filter(|k| k != loss_key).collect();
        let mut columns = vec![Vec::with_capacity(records.len()); names.len()];
        let mut loss = Vec::with_capacity(records.len());
        for (i, rec) in records.iter().enumerate() {
            let get = |key: &str| -> Result<f64> {
                rec.iter().find(|(k, _)| k == key).map(|(_, v)| *v).ok_or_else(|| {
                    LawError::UnknownColumn {
                        column: format!("{key} (record {})", i + 1),
                        available: rec.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", "),
                    }
                })
            };
            loss.push(get(loss_key)?);
            for (j, name) in names.iter().enumerate() {
                columns[j].push(get(name)?);
            }
        }
        Ok(Points { names, columns, loss, rows: (1..=records.len()).collect(), source: "memory".into(), text_names: vec![], text_columns: vec![] })
    }

    /// Load a CSV with a header row. Every fully numeric column is available
    /// under its own header, every other column as a text column; `map` adds or
    /// renames columns (`N=Model Size`) and derives new ones from Rhai expressions
    /// over names defined before it (`D=C/(6*N)`). The loss is the mapped or header
    /// column `loss`. Unit suffixes (`2.8B`) are numbers only with `units`.
    pub fn from_csv(path: &str, map: &ColumnMap) -> Result<Points> {
        Self::from_csv_with_units(path, map, false)
    }

    /// As [`Points::from_csv`], reading unit suffixes when `units` (see [`parse_number`]).
    pub fn from_csv_with_units(path: &str, map: &ColumnMap, units: bool) -> Result<Points> {
        let file = std::fs::File::open(path)
            .map_err(|source| LawError::Io { path: path.into(), source })?;
        Self::from_csv_reader_with_units(file, path, map, units)
    }

    /// As [`Points::from_csv`], from any reader (`source` names it in errors).
    pub fn from_csv_reader<R: std::io::Read>(reader: R, source: &str, map: &ColumnMap) -> Result<Points> {
        Self::from_csv_reader_with_units(reader, source, map, false)
    }

    /// As [`Points::from_csv_with_units`], from any reader.
    pub fn from_csv_reader_with_units<R: std::io::Read>(reader: R, source: &str, map: &ColumnMap, units: bool) -> Result<Points> {
        let (headers, raw) = read_csv_cells(reader, source)?;
        let n = raw.first().map_or(0, Vec::len);
        let named: Vec<(String, Column)> = headers.into_iter().zip(raw).map(|(h, cells)| (h, Column::from_cells(cells, units))).collect();
        Points::from_mixed_columns(named, n, source, map)
    }

    /// Build from named columns, numeric or text, each `n` long, with the column mapping of
    /// [`Points::from_csv`]: a map entry naming a numeric column takes it, one naming a text
    /// column is an error naming its first non-number (a mapped column is meant as a
    /// number; text columns are used by their own names in filters and groups), any other
    /// is derived (`D=C/(6*N)`); then the loss is split off (it must be numeric).
    pub fn from_mixed_columns(named: Vec<(String, Column)>, n: usize, source: &str, map: &ColumnMap) -> Result<Points> {
        if let Some((name, col)) = named.iter().find(|(_, c)| c.len() != n) {
            return Err(LawError::BadOption(format!("column '{name}' has {} values, the first column {n}", col.len())));
        }
        let headers: Vec<String> = named.iter().map(|(k, _)| k.clone()).collect();
        let given: Vec<(String, Column)> = named;
        let (mut names, mut columns, mut text_names, mut text_columns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (name, col) in &given {
            match col {
                Column::Numbers(v) => {
                    names.push(name.clone());
                    columns.push(v.clone());
                }
                Column::Text(v) => {
                    text_names.push(name.clone());
                    text_columns.push(v.clone());
                }
            }
        }
        for entry in &map.entries {
            // A source names the column as given, even after an entry replaced it.
            let source_col = given.iter().find(|(h, _)| *h == entry.source).map(|(_, c)| c);
            let col = match source_col {
                // Mapped explicitly, so meant as a number: a text cell is an error here.
                Some(Column::Text(cells)) => {
                    let (i, v) = first_non_number(cells);
                    return Err(not_a_number(&entry.source, i + 1, v));
                }
                Some(c) => c.clone(),
                None => Column::Numbers(derive_column(entry, &names, &columns, &text_names, &text_columns, &headers, n)?),
            };
            // The new name replaces whatever column had it, numeric or text.
            if let Some(k) = names.iter().position(|x| *x == entry.name) {
                names.remove(k);
                columns.remove(k);
            }
            if let Some(k) = text_names.iter().position(|x| *x == entry.name) {
                text_names.remove(k);
                text_columns.remove(k);
            }
            match col {
                Column::Numbers(v) => {
                    names.push(entry.name.clone());
                    columns.push(v);
                }
                Column::Text(v) => {
                    text_names.push(entry.name.clone());
                    text_columns.push(v);
                }
            }
        }
        let Some(li) = names.iter().position(|x| x == "loss") else {
            if let Some(k) = text_names.iter().position(|x| x == "loss") {
                let (i, v) = first_non_number(&text_columns[k]);
                return Err(not_a_number("loss", i + 1, v));
            }
            return Err(LawError::UnknownColumn {
                column: "loss".into(),
                available: format!("{} (map one with loss=COLUMN)", headers.join(", ")),
            });
        };
        let loss = columns.remove(li);
        names.remove(li);
        Ok(Points { names, columns, loss, rows: (1..=n).collect(), source: source.into(), text_names, text_columns })
    }

    /// Build from in-memory numeric columns (the runs of a study, one value per run in
    /// each column) with the same column mapping as [`Points::from_csv`]: every column is
    /// available under its own name, `map` renames or derives (`D=C/(6*N)`), and the loss
    /// is the mapped or named column `loss`. `source` names the points in errors.
    pub fn from_named_columns(named: Vec<(String, Vec<f64>)>, source: &str, map: &ColumnMap) -> Result<Points> {
        let n = named.first().map_or(0, |(_, c)| c.len());
        Points::from_mixed_columns(named.into_iter().map(|(k, v)| (k, Column::Numbers(v))).collect(), n, source, map)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.loss.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.loss.is_empty()
    }

    /// Column by name, or an error listing the available ones.
    /// A text column is an error naming its first cell that is not a number.
    pub fn column(&self, name: &str) -> Result<&[f64]> {
        if let Some(j) = self.names.iter().position(|x| x == name) {
            return Ok(self.columns[j].as_slice());
        }
        if let Some(j) = self.text_names.iter().position(|x| x == name) {
            let (i, v) = first_non_number(&self.text_columns[j]);
            return Err(not_a_number(name, self.rows.get(i).copied().unwrap_or(i + 1), v));
        }
        Err(LawError::UnknownColumn { column: name.into(), available: self.available() })
    }

    fn available(&self) -> String {
        let mut v = self.names.clone();
        v.push("loss".into());
        v.extend(self.text_names.iter().map(|t| format!("{t} (text)")));
        v.join(", ")
    }

    /// Text column by name, if there is one.
    pub fn text_column(&self, name: &str) -> Option<&[String]> {
        self.text_names.iter().position(|x| x == name).map(|j| self.text_columns[j].as_slice())
    }

    /// The rows for which the Rhai expression `expr` is true, evaluated per row over its
    /// columns (numbers as floats, text as strings, and `loss`), e.g.
    /// `domain == "ArXiv" && N >= 1e8`. An expression that does not compile, fails on a
    /// row or gives a non-boolean is an error naming the expression and the row.
    pub fn filter_where(&self, expr: &str) -> Result<Points> {
        let engine = rhai::Engine::new();
        let bad = |message: String| LawError::BadOption(format!("where {expr:?}: {message}"));
        let ast = engine.compile_expression(expr).map_err(|e| bad(e.to_string()))?;
        let mut keep = Vec::new();
        for i in 0..self.len() {
            let mut scope = rhai::Scope::new();
            for (name, col) in self.names.iter().zip(&self.columns) {
                scope.push_constant(name.as_str(), col[i]);
            }
            for (name, col) in self.text_names.iter().zip(&self.text_columns) {
                scope.push_constant(name.as_str(), col[i].clone());
            }
            scope.push_constant("loss", self.loss[i]);
            let row = self.rows[i];
            let v = engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, &ast).map_err(|e| {
                if let rhai::EvalAltResult::ErrorVariableNotFound(var, _) = *e {
                    bad(format!("row {row}: no column '{var}' (columns: {})", self.available()))
                } else {
                    bad(format!("row {row}: {e}"))
                }
            })?;
            match v.as_bool() {
                Ok(true) => keep.push(i),
                Ok(false) => {}
                Err(t) => return Err(bad(format!("row {row}: gives a {t}, not true or false"))),
            }
        }
        self.select(&keep)
    }

    /// The rows split by the distinct values of column `by` (numeric or text), as
    /// `(value, points)` in ascending order of the value (numbers numerically).
    pub fn groups(&self, by: &str) -> Result<Vec<(String, Points)>> {
        if let Some(col) = self.text_column(by) {
            let mut keys: Vec<&String> = col.iter().collect();
            keys.sort();
            keys.dedup();
            return keys
                .into_iter()
                .map(|k| {
                    let idx: Vec<usize> = (0..self.len()).filter(|&i| &col[i] == k).collect();
                    Ok((k.clone(), self.select(&idx)?))
                })
                .collect();
        }
        let col: &[f64] = if by == "loss" { &self.loss } else { self.column(by)? };
        let mut keys: Vec<f64> = col.to_vec();
        keys.sort_by(|a, b| a.total_cmp(b));
        keys.dedup_by(|a, b| a.total_cmp(b).is_eq());
        keys.into_iter()
            .map(|k| {
                let idx: Vec<usize> = (0..self.len()).filter(|&i| col[i].total_cmp(&k).is_eq()).collect();
                Ok((format!("{k}"), self.select(&idx)?))
            })
            .collect()
    }

    /// The rows at `indices` (in that order; repeats allowed, as a bootstrap
    /// needs). An index past the end is an error naming it.
    pub fn select(&self, indices: &[usize]) -> Result<Points> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(LawError::BadOption(format!("row index {bad} is out of range ({} rows)", self.len())));
        }
        Ok(Points {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| indices.iter().map(|&i| c[i]).collect()).collect(),
            loss: indices.iter().map(|&i| self.loss[i]).collect(),
            rows: indices.iter().map(|&i| self.rows[i]).collect(),
            source: self.source.clone(),
            text_names: self.text_names.clone(),
            text_columns: self.text_columns.iter().map(|c| indices.iter().map(|&i| c[i].clone()).collect()).collect(),
        })
    }

    /// Points to predict at: input columns only (the loss is NaN and unused).
    pub fn for_prediction(columns: Vec<(String, Vec<f64>)>) -> Result<Points> {
        let n = columns.first().map_or(0, |c| c.1.len());
        Points::from_columns(columns, vec![f64::NAN; n])
    }

    /// Indices of rows for which `keep(row_values_by_name, loss)` is true.
    pub fn indices_where(&self, mut keep: impl FnMut(&dyn Fn(&str) -> Option<f64>, f64) -> bool) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| {
                let get = |name: &str| self.names.iter().position(|x| x == name).map(|j| self.columns[j][i]);
                keep(&get, self.loss[i])
            })
            .collect()
    }

    /// Check the points against a law and build its input table: every input
    /// column must exist, be finite and (where the law says so) positive; the
    /// loss must be finite (and positive when `positive_loss`, as a log-space
    /// objective needs); and there must be more points than `free_params`.
    pub fn inputs_for(&self, law: &dyn LawForm, free_params: usize, positive_loss: bool) -> Result<Inputs> {
        let inputs = self.law_inputs(law)?;
        for (i, &y) in self.loss.iter().enumerate() {
            if !y.is_finite() {
                return Err(LawError::NonFinite { column: "loss".into(), row: self.rows[i] });
            }
            if positive_loss && y <= 0.0 {
                return Err(LawError::NonPositive {
                    column: "loss".into(),
                    row: self.rows[i],
                    value: y,
                    law: format!("{} (log-space objective)", law.name()),
                });
            }
        }
        if self.len() <= free_params {
            return Err(LawError::TooFewPoints { points: self.len(), params: free_params });
        }
        Ok(inputs)
    }

    /// The law's input table with the input checks of `inputs_for` but none
    /// on the loss (for prediction).
    pub fn law_inputs(&self, law: &dyn LawForm) -> Result<Inputs> {
        let wanted = law.inputs();
        let mut cols = Vec::with_capacity(wanted.len());
        for (k, name) in wanted.iter().enumerate() {
            let col = self.column(name)?;
            for (i, &v) in col.iter().enumerate() {
                if !v.is_finite() {
                    return Err(LawError::NonFinite { column: name.clone(), row: self.rows[i] });
                }
                if law.input_must_be_positive(k) && v <= 0.0 {
                    return Err(LawError::NonPositive {
                        column: name.clone(),
                        row: self.rows[i],
                        value: v,
                        law: law.name().into(),
                    });
                }
            }
            cols.push(col.to_vec());
        }
        let inputs = Inputs::new(wanted, cols);
        law.check_inputs(&inputs)
            .map_err(|(i, message)| LawError::BadRow { row: self.rows.get(i).copied().unwrap_or(i + 1), message })?;
        Ok(inputs)
    }
}

/// One source column: all numbers, or text (at least one cell is not a number).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Numbers(Vec<f64>),
    Text(Vec<String>),
}

impl Column {
    /// Numbers when every cell parses (with unit suffixes when `units`), else text.
    pub fn from_cells(cells: Vec<String>, units: bool) -> Column {
        let parsed: Option<Vec<f64>> = cells.iter().map(|c| parse_number(c, units)).collect();
        match parsed {
            Some(v) => Column::Numbers(v),
            None => Column::Text(cells),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first cell that is not a plain number (index and value); a text column has one.
fn first_non_number(cells: &[String]) -> (usize, &str) {
    cells.iter().enumerate().find(|(_, c)| parse_number(c, false).is_none()).map_or((0, ""), |(i, c)| (i, c.as_str()))
}

/// A CSV's header and its cells by column (trimmed; a short row's missing cells are empty).
pub fn read_csv_cells<R: std::io::Read>(reader: R, source: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let csv_err = |e: csv::Error| LawError::Csv { path: source.into(), message: e.to_string() };
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(reader);
    let headers: Vec<String> = rdr.headers().map_err(csv_err)?.iter().map(String::from).collect();
    let mut raw: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        for (j, col) in raw.iter_mut().enumerate() {
            col.push(rec.get(j).unwrap_or("").to_string());
        }
    }
    Ok((headers, raw))
}

/// Evaluate a derived column `name=expr` with Rhai over the names defined so far.
fn derive_column(
    entry: &ColumnMapEntry,
    names: &[String],
    columns: &[Vec<f64>],
    text_names: &[String],
    text_columns: &[Vec<String>],
    headers: &[String],
    n: usize,
) -> Result<Vec<f64>> {
    let engine = rhai::Engine::new();
    let ast = engine.compile_expression(&entry.source).map_err(|_| LawError::UnknownColumn {
        column: entry.source.clone(),
        available: headers.join(", "),
    })?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut scope = rhai::Scope::new();
        for (name, col) in names.iter().zip(columns) {
            scope.push_constant(name.as_str(), col[i]);
        }
        for (name, col) in text_names.iter().zip(text_columns) {
            scope.push_constant(name.as_str(), col[i].clone());
        }
        let v = engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, &ast).map_err(|e| {
            if let rhai::EvalAltResult::ErrorVariableNotFound(var, _) = *e {
                LawError::UnknownColumn {
                    column: format!("{var} (in '{}={}')", entry.name, entry.source),
                    available: names.join(", "),
                }
            } else {
                LawError::BadMapping {
                    spec: format!("{}={}", entry.name, entry.source),
                    message: format!("row {}: {e}", i + 1),
                }
            }
        })?;
        let x = v.as_float().or_else(|_| v.as_int().map(|k| k as f64)).map_err(|t| LawError::BadMapping {
            spec: format!("{}={}", entry.name, entry.source),
            message: format!("row {}: expression gives a {t}, not a number", i + 1),
        })?;
        out.push(x);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_keeps_commas_inside_expressions() {
        let m = ColumnMap::parse("N=Model Size, D=max(C, 1.0)/(6*N),loss=loss").unwrap();
        let names: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["N", "D", "loss"]);
        assert_eq!(m.entries[1].source, "max(C, 1.0)/(6*N)");
    }

    #[test]
    fn derived_columns_and_row_numbers() {
        let csv = "size,flops,loss\n10,600,3.0\n20,2400,2.5\n";
        let p = Points::from_csv_reader(csv.as_bytes(), "t.csv", &ColumnMap::parse("N=size,C=flops,D=C/(6*N)").unwrap()).unwrap();
        assert_eq!(p.column("D").unwrap(), &[10.0, 20.0]);
        let q = p.select(&[1, 1, 0]).unwrap();
        assert_eq!(q.rows, vec![2, 2, 1]);
        assert_eq!(q.loss, vec![2.5, 2.5, 3.0]);
    }

    #[test]
    fn records_need_every_key() {
        let recs = vec![vec![("N".to_string(), 1.0), ("loss".to_string(), 2.0)], vec![("loss".to_string(), 2.0)]];
        let err = Points::from_records(&recs, "loss").unwrap_err().to_string();
        assert!(err.contains("record 2"), "{err}");
        assert!(Points::from_records(&recs[..1], "loss").is_ok());
    }
}
