//! Plugin settings: how an author declares them ([`Setting`]), how they are
//! described across the ABI ([`crate::abi::SettingDesc`]), and the one validation
//! routine both sides use ([`validate`]), so a script is checked against the
//! descriptor before any run and the plugin sees exactly what the host checked.
use crate::abi::{self, SettingDesc, Str};
use serde_json::{Map, Value};

/// A setting's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    Bool,
    Int,
    Float,
    String,
}

impl SettingType {
    pub fn code(self) -> u32 {
        match self {
            SettingType::Bool => abi::SETTING_BOOL,
            SettingType::Int => abi::SETTING_INT,
            SettingType::Float => abi::SETTING_FLOAT,
            SettingType::String => abi::SETTING_STRING,
        }
    }

    pub fn from_code(c: u32) -> Option<SettingType> {
        Some(match c {
            abi::SETTING_BOOL => SettingType::Bool,
            abi::SETTING_INT => SettingType::Int,
            abi::SETTING_FLOAT => SettingType::Float,
            abi::SETTING_STRING => SettingType::String,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SettingType::Bool => "bool",
            SettingType::Int => "int",
            SettingType::Float => "float",
            SettingType::String => "string",
        }
    }
}

/// One accepted setting, with its type, default and bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    pub ty: SettingType,
    pub default: Value,
    pub doc: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Setting {
    pub fn float(key: &str, default: f64, doc: &str) -> Setting {
        Setting { key: key.into(), ty: SettingType::Float, default: Value::from(default), doc: doc.into(), min: None, max: None }
    }
    pub fn int(key: &str, default: i64, doc: &str) -> Setting {
        Setting { key: key.into(), ty: SettingType::Int, default: Value::from(default), doc: doc.into(), min: None, max: None }
    }
    pub fn bool(key: &str, default: bool, doc: &str) -> Setting {
        Setting { key: key.into(), ty: SettingType::Bool, default: Value::from(default), doc: doc.into(), min: None, max: None }
    }
    pub fn string(key: &str, default: &str, doc: &str) -> Setting {
        Setting { key: key.into(), ty: SettingType::String, default: Value::from(default), doc: doc.into(), min: None, max: None }
    }
    /// Inclusive bounds for a numeric setting.
    pub fn range(mut self, min: f64, max: f64) -> Setting {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// The ABI form; strings are leaked (descriptors live forever).
    pub fn to_desc(&self) -> SettingDesc {
        SettingDesc {
            key: Str::leak(self.key.clone()),
            ty: self.ty.code(),
            default_json: Str::leak(self.default.to_string()),
            doc: Str::leak(self.doc.clone()),
            min: self.min.unwrap_or(f64::NAN),
            max: self.max.unwrap_or(f64::NAN),
        }
    }

    /// Read back an ABI description.
    ///
    /// # Safety
    /// The strings in `d` must be valid (a loaded descriptor's are).
    pub unsafe fn from_desc(d: &SettingDesc) -> Result<Setting, String> {
        let key = d.key.to_string_lossy();
        let ty = SettingType::from_code(d.ty).ok_or_else(|| format!("setting `{key}` has unknown type code {}", d.ty))?;
        let text = d.default_json.to_string_lossy();
        let default: Value =
            serde_json::from_str(&text).map_err(|e| format!("setting `{key}` has a default that is not JSON ({text}): {e}"))?;
        Ok(Setting {
            key,
            ty,
            default,
            doc: d.doc.to_string_lossy(),
            min: (!d.min.is_nan()).then_some(d.min),
            max: (!d.max.is_nan()).then_some(d.max),
        })
    }
}

/// Check `given` (a JSON object, or null for "all defaults") against `accepted`
/// and return the complete settings, defaults filled in. Errors name the plugin
/// and the key: unknown keys (with the accepted list), wrong types, out-of-range values.
pub fn validate(plugin: &str, accepted: &[Setting], given: &Value) -> Result<Map<String, Value>, String> {
    let empty = Map::new();
    let given = match given {
        Value::Null => &empty,
        Value::Object(m) => m,
        other => return Err(format!("plugin `{plugin}`: settings must be a map of key: value, got {other}")),
    };
    for key in given.keys() {
        if !accepted.iter().any(|s| &s.key == key) {
            let keys: Vec<&str> = accepted.iter().map(|s| s.key.as_str()).collect();
            return Err(format!(
                "plugin `{plugin}`: unknown setting `{key}` (accepted: {})",
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            ));
        }
    }
    let mut out = Map::new();
    for s in accepted {
        let v = given.get(&s.key).unwrap_or(&s.default);
        let v =
            coerce(s.ty, v).ok_or_else(|| format!("plugin `{plugin}`: setting `{}` must be of type {}, got {v}", s.key, s.ty.name()))?;
        if let Some(x) = v.as_f64() {
            if s.min.is_some_and(|m| x < m) || s.max.is_some_and(|m| x > m) {
                return Err(format!(
                    "plugin `{plugin}`: setting `{}` = {x} is outside [{}, {}]",
                    s.key,
                    s.min.map_or("-inf".into(), |m| m.to_string()),
                    s.max.map_or("inf".into(), |m| m.to_string())
                ));
            }
        }
        out.insert(s.key.clone(), v);
    }
    Ok(out)
}

/// `v` as type `ty`; integers are accepted for floats (scripts write `1` for `1.0`),
/// integral floats for ints.
fn coerce(ty: SettingType, v: &Value) -> Option<Value> {
    match ty {
        SettingType::Bool => v.as_bool().map(Value::from),
        SettingType::String => v.as_str().map(Value::from),
        SettingType::Float => v.as_f64().map(Value::from),
        SettingType::Int => {
            v.as_i64().or_else(|| v.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15).map(|x| x as i64)).map(Value::from)
        }
    }
}

/// Validated settings as the plugin receives them, with typed getters. Getters
/// error (never panic) on a missing key or a wrong type.
#[derive(Debug, Clone, Default)]
pub struct SettingValues(pub Map<String, Value>);

impl SettingValues {
    fn get(&self, key: &str) -> Result<&Value, crate::PluginError> {
        self.0.get(key).ok_or_else(|| crate::PluginError::msg(format!("setting `{key}` is missing")))
    }
    pub fn f64(&self, key: &str) -> Result<f64, crate::PluginError> {
        self.get(key)?.as_f64().ok_or_else(|| crate::PluginError::msg(format!("setting `{key}` is not a number")))
    }
    pub fn i64(&self, key: &str) -> Result<i64, crate::PluginError> {
        self.get(key)?.as_i64().ok_or_else(|| crate::PluginError::msg(format!("setting `{key}` is not an integer")))
    }
    pub fn bool(&self, key: &str) -> Result<bool, crate::PluginError> {
        self.get(key)?.as_bool().ok_or_else(|| crate::PluginError::msg(format!("setting `{key}` is not a bool")))
    }
    pub fn str(&self, key: &str) -> Result<&str, crate::PluginError> {
        self.get(key)?.as_str().ok_or_else(|| crate::PluginError::msg(format!("setting `{key}` is not a string")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepted() -> Vec<Setting> {
        vec![Setting::float("lambda", 0.4, "weight").range(0.0, 10.0), Setting::int("n", 8, "count")]
    }

    #[test]
    fn fills_defaults_and_coerces() {
        let m = validate("p", &accepted(), &json!({"lambda": 1, "n": 3.0})).unwrap();
        assert_eq!(m["lambda"], json!(1.0));
        assert_eq!(m["n"], json!(3));
        let m = validate("p", &accepted(), &Value::Null).unwrap();
        assert_eq!(m["lambda"], json!(0.4));
    }

    #[test]
    fn errors_name_plugin_and_key() {
        let e = validate("mir", &accepted(), &json!({"lamda": 1})).unwrap_err();
        assert!(e.contains("`mir`") && e.contains("`lamda`") && e.contains("lambda, n"), "{e}");
        let e = validate("mir", &accepted(), &json!({"n": "x"})).unwrap_err();
        assert!(e.contains("`n` must be of type int"), "{e}");
        let e = validate("mir", &accepted(), &json!({"lambda": 11})).unwrap_err();
        assert!(e.contains("outside [0, 10]"), "{e}");
    }

    #[test]
    fn desc_round_trip() {
        for s in accepted() {
            let back = unsafe { Setting::from_desc(&s.to_desc()) }.unwrap();
            assert_eq!(back, s);
        }
    }
}
