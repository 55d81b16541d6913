//! Data input: the `Points` table a law is fitted to. It owns loading from CSV
//! with a column mapping (`N=params,D=tokens,loss=loss`, with derived columns
//! written as Rhai expressions such as `D=C/(6*N)`), construction from
//! in-memory rows (what the host passes for runs of a study), and the checks
//! that turn bad input into errors naming the column and the row.
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
        Ok(Points { names, columns, loss, rows: (1..=n).collect(), source: "memory".into() })
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
        Ok(Points { names, columns, loss, rows: (1..=records.len()).collect(), source: "memory".into() })
    }

    /// Load a CSV with a header row. Every fully numeric column is available
    /// under its own header; `map` adds or renames columns (`N=Model Size`) and
    /// derives new ones from Rhai expressions over names defined before it
    /// (`D=C/(6*N)`). The loss is the mapped or header column `loss`.
    pub fn from_csv(path: &str, map: &ColumnMap) -> Result<Points> {
        let file = std::fs::File::open(path)
            .map_err(|source| LawError::Io { path: path.into(), source })?;
        Self::from_csv_reader(file, path, map)
    }

    /// As [`Points::from_csv`], from any reader (`source` names it in errors).
    pub fn from_csv_reader<R: std::io::Read>(reader: R, source: &str, map: &ColumnMap) -> Result<Points> {
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
        let n = raw.first().map_or(0, Vec::len);
        let parse_col = |j: usize| -> Result<Vec<f64>> {
            raw[j]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<f64>().map_err(|_| LawError::NotANumber {
                        column: headers[j].clone(),
                        row: i + 1,
                        value: s.clone(),
                    })
                })
                .collect()
        };
        // Defined names: every numeric CSV column first (so `--columns` is
        // optional when headers already match the law's inputs).
        let mut names: Vec<String> = Vec::new();
        let mut columns: Vec<Vec<f64>> = Vec::new();
        for (j, header) in headers.iter().enumerate() {
            if let Ok(col) = parse_col(j) {
                names.push(header.clone());
                columns.push(col);
            }
        }
        // Referenced explicitly: a non-number in a named column is an error.
        Points::mapped(names, columns, &headers, n, source, map, |j| parse_col(j))
    }

    /// Applies `map` to the defined columns (`names`/`columns`, from sources `headers`):
    /// an entry naming a source column takes it as given (`source_column(j)`), any other is
    /// derived (`D=C/(6*N)`); then splits off the loss column.
    fn mapped(
        mut names: Vec<String>,
        mut columns: Vec<Vec<f64>>,
        headers: &[String],
        n: usize,
        source: &str,
        map: &ColumnMap,
        source_column: impl Fn(usize) -> Result<Vec<f64>>,
    ) -> Result<Points> {
        for entry in &map.entries {
            let col = match headers.iter().position(|h| *h == entry.source) {
                Some(j) => source_column(j)?,
                None => derive_column(entry, &names, &columns, headers, n)?,
            };
            if let Some(k) = names.iter().position(|x| *x == entry.name) {
                columns[k] = col;
            } else {
                names.push(entry.name.clone());
                columns.push(col);
            }
        }
        let Some(li) = names.iter().position(|x| x == "loss") else {
            return Err(LawError::UnknownColumn {
                column: "loss".into(),
                available: format!("{} (map one with loss=COLUMN)", headers.join(", ")),
            });
        };
        let loss = columns.remove(li);
        names.remove(li);
        Ok(Points { names, columns, loss, rows: (1..=n).collect(), source: source.into() })
    }

    /// Build from in-memory numeric columns (the runs of a study, one value per run in
    /// each column) with the same column mapping as [`Points::from_csv`]: every column is
    /// available under its own name, `map` renames or derives (`D=C/(6*N)`), and the loss
    /// is the mapped or named column `loss`. `source` names the points in errors.
    pub fn from_named_columns(named: Vec<(String, Vec<f64>)>, source: &str, map: &ColumnMap) -> Result<Points> {
        let n = named.first().map_or(0, |(_, c)| c.len());
        if let Some((name, col)) = named.iter().find(|(_, c)| c.len() != n) {
            return Err(LawError::BadOption(format!("column '{name}' has {} values, the first column {n}", col.len())));
        }
        let headers: Vec<String> = named.iter().map(|(k, _)| k.clone()).collect();
        let (names, columns): (Vec<String>, Vec<Vec<f64>>) = named.into_iter().unzip();
        // A source names the column as given, even after an entry replaced it (as in a CSV).
        let given = columns.clone();
        Points::mapped(names, columns, &headers, n, source, map, |j| Ok(given[j].clone()))
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
    pub fn column(&self, name: &str) -> Result<&[f64]> {
        self.names
            .iter()
            .position(|x| x == name)
            .map(|j| self.columns[j].as_slice())
            .ok_or_else(|| LawError::UnknownColumn { column: name.into(), available: self.available() })
    }

    fn available(&self) -> String {
        let mut v = self.names.clone();
        v.push("loss".into());
        v.join(", ")
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

/// Evaluate a derived column `name=expr` with Rhai over the names defined so far.
fn derive_column(
    entry: &ColumnMapEntry,
    names: &[String],
    columns: &[Vec<f64>],
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
