//! The JSON params object a plugin receives.

use crate::{PluginError, Result};
use serde::de::DeserializeOwned;

/// Params as the host validated them against the plugin's schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub serde_json::Map<String, serde_json::Value>);

impl Params {
    /// Parse the JSON text the host sends; `""` means no params.
    pub fn parse(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Params::default());
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => Ok(Params(map)),
            Ok(other) => Err(PluginError::invalid_params("", format!("params must be a JSON object, got {other}"))),
            Err(e) => Err(PluginError::invalid_params("", format!("params are not valid JSON: {e}"))),
        }
    }

    /// Params from a JSON value (handy in tests).
    pub fn from_json(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Object(map) => Params(map),
            _ => Params::default(),
        }
    }

    /// Deserialize the whole object into a typed struct. Serde's message names
    /// the offending field.
    pub fn to<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(serde_json::Value::Object(self.0.clone())).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("").to_string();
            PluginError::invalid_params(field, msg)
        })
    }

    /// A number, or `default` when absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| PluginError::invalid_params(key, format!("`{key}` must be a number, got {v}"))),
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| PluginError::invalid_params(key, format!("`{key}` must be a non-negative integer, got {v}"))),
        }
    }

    /// A string, or `default` when absent.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| PluginError::invalid_params(key, format!("`{key}` must be a string, got {v}"))),
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| PluginError::invalid_params(key, format!("`{key}` must be true or false, got {v}"))),
        }
    }
}
