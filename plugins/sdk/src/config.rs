//! The plugin's `config` table (TOML in orgwall.toml, handed over as JSON) with typed getters
//! that fall back to a default when a key is absent and fail when it has the wrong type.

use serde_json::Value;

/// A plugin's configuration.
#[derive(Debug, Clone, Default)]
pub struct Config(serde_json::Map<String, Value>);

impl Config {
    /// Parses the JSON object the host passes to `init`.
    pub fn parse(json: &str) -> Result<Config, String> {
        match serde_json::from_str(json) {
            Ok(Value::Object(m)) => Ok(Config(m)),
            Ok(_) => Err("plugin config must be a table".into()),
            Err(e) => Err(format!("plugin config is not valid JSON: {e}")),
        }
    }

    /// A list of strings, or `default` when the key is absent.
    pub fn strings(&self, key: &str, default: &[&str]) -> Result<Vec<String>, String> {
        match self.0.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{key}` must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(format!("`{key}` must be a list of strings")),
        }
    }

    /// A string, or `default` when the key is absent.
    pub fn string(&self, key: &str, default: &str) -> Result<String, String> {
        match self.0.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    }

    /// A non-negative integer, or `default` when the key is absent.
    pub fn u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("`{key}` must be a non-negative integer")),
        }
    }
}
