//! What a cell's id is made of, as a flat list of named inputs, so that "why did this
//! id change?" has an exact answer.
//!
//! A cell's [`CellInputs`] are ordered `name = value` pairs: every resolved setting
//! (`spec.lr = 0.003`), the content hashes of its inputs (`data.fingerprint`,
//! `plugin.mir.blake3`), the device kind and precision, and
//! the versions of dctk, tch and libtorch (with its CUDA tag). The id is blake3 over that
//! list; [`diff`] between two lists is what `dctk plan` and `dctk run` print when an id
//! changed or an exported bundle meets different inputs. Paths on this machine never
//! enter the id: the data is identified by its content.
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The named inputs of one cell, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellInputs(pub IndexMap<String, String>);

impl CellInputs {
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// Adds every leaf of a JSON value under `prefix` (`spec.domains.code.weight = 2`).
    /// Arrays of scalars become one value (`[1, 2]`); arrays of maps are indexed.
    pub fn insert_json(&mut self, prefix: &str, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                if map.is_empty() {
                    self.insert(prefix, "{}");
                }
                for (k, v) in map {
                    self.insert_json(&format!("{prefix}.{k}"), v);
                }
            }
            Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
                if items.is_empty() {
                    self.insert(prefix, "[]");
                }
                for (i, v) in items.iter().enumerate() {
                    self.insert_json(&format!("{prefix}[{i}]"), v);
                }
            }
            other => self.insert(prefix, other.to_string()),
        }
    }

    /// The cell id: the first 16 hex digits of blake3 over the `name = value` lines.
    pub fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"dctk/cell/v2\n");
        for (k, v) in &self.0 {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        h.finalize().to_hex()[..16].to_string()
    }
}

/// One difference between two cells' inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Changed { name: String, before: String, after: String },
    Added { name: String, value: String },
    Removed { name: String, value: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Changed { name, before, after } => write!(f, "{name}: {} → {}", short(before), short(after)),
            Change::Added { name, value } => write!(f, "{name}: (unset) → {}", short(value)),
            Change::Removed { name, value } => write!(f, "{name}: {} → (unset)", short(value)),
        }
    }
}

/// Long values (hash lists) shortened for display.
fn short(v: &str) -> String {
    if v.chars().count() > 72 {
        format!("{}…", v.chars().take(72).collect::<String>())
    } else {
        v.to_string()
    }
}

/// What differs from `before` to `after`, in `after`'s order, then removed names.
pub fn diff(before: &CellInputs, after: &CellInputs) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in &after.0 {
        match before.0.get(k) {
            Some(b) if b == v => {}
            Some(b) => out.push(Change::Changed { name: k.clone(), before: b.clone(), after: v.clone() }),
            None => out.push(Change::Added { name: k.clone(), value: v.clone() }),
        }
    }
    for (k, v) in &before.0 {
        if !after.0.contains_key(k) {
            out.push(Change::Removed { name: k.clone(), value: v.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(v: serde_json::Value) -> CellInputs {
        let mut i = CellInputs::default();
        i.insert_json("spec", &v);
        i
    }

    #[test]
    fn flattening_names_every_leaf() {
        let i = inputs(json!({"lr": 0.003, "domains": {"code": {"weight": 2}}, "regularizers": [{"name": "mir"}], "tags": [1, 2]}));
        let names: Vec<&str> = i.0.keys().map(|s| s.as_str()).collect();
        assert_eq!(names, ["spec.domains.code.weight", "spec.lr", "spec.regularizers[0].name", "spec.tags"]);
        assert_eq!(i.0["spec.tags"], "[1,2]");
    }

    #[test]
    fn one_changed_setting_changes_the_id_and_is_the_only_difference() {
        let a = inputs(json!({"lr": 0.003, "weight_decay": 0.1}));
        let b = inputs(json!({"lr": 0.003, "weight_decay": 0.2}));
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), inputs(json!({"lr": 0.003, "weight_decay": 0.1})).id());
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "spec.weight_decay: 0.1 → 0.2");
    }

    #[test]
    fn added_and_removed_inputs_are_reported() {
        let a = inputs(json!({"lr": 1}));
        let b = inputs(json!({"seed": 2}));
        let d: Vec<String> = diff(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(d, ["spec.seed: (unset) → 2", "spec.lr: 1 → (unset)"]);
    }
}
