//! [`Fields`]: reading one TOML table, every error naming the field's path,
//! unknown fields refused; and the small helpers every section uses.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::error::{ConfigError, Result};

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A TOML table being read: every field read is removed, so what is left at
/// [`finish`](Fields::finish) is unknown (usually a typo) and reported.
pub(super) struct Fields {
    path: String,
    table: Table,
    known: Vec<&'static str>,
}

impl Fields {
    pub(super) fn new(path: String, table: Table) -> Self {
        Fields {
            path,
            table,
            known: Vec::new(),
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    pub(super) fn wrong(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::invalid(
            self.path(key),
            format!("expected {expected}, found {}", kind(found)),
        )
    }

    pub(super) fn opt_str(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    pub(super) fn str(&mut self, key: &'static str) -> Result<String> {
        self.opt_str(key)?
            .ok_or_else(|| ConfigError::invalid(self.path(key), "missing (required)"))
    }

    pub(super) fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong(key, "true or false", &v)),
        }
    }

    pub(super) fn opt_u32(&mut self, key: &'static str) -> Result<Option<u32>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => u32::try_from(n).map(Some).map_err(|_| {
                ConfigError::invalid(
                    self.path(key),
                    format!("{n} is out of range (0 to {})", u32::MAX),
                )
            }),
            Some(v) => Err(self.wrong(key, "a non-negative integer", &v)),
        }
    }

    pub(super) fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => u64::try_from(n)
                .map(Some)
                .map_err(|_| ConfigError::invalid(self.path(key), format!("{n} is negative"))),
            Some(v) => Err(self.wrong(key, "a non-negative integer", &v)),
        }
    }

    pub(super) fn opt_table(&mut self, key: &'static str) -> Result<Option<Fields>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(Fields::new(self.path(key), t))),
            Some(v) => Err(self.wrong(key, "a table", &v)),
        }
    }

    pub(super) fn names(&mut self, key: &'static str) -> Result<Vec<String>> {
        let field = self.path(key);
        match self.take(key) {
            None => Err(ConfigError::invalid(
                field,
                "missing (required): a list of backend names",
            )),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ConfigError::invalid(
                        format!("{field}[{i}]"),
                        format!("expected a backend name (a string), found {}", kind(&other)),
                    )),
                })
                .collect(),
            Some(v) => Err(ConfigError::invalid(
                field,
                format!("expected a list of backend names, found {}", kind(&v)),
            )),
        }
    }

    /// Fails on the first field that was never read.
    pub(super) fn finish(self) -> Result<()> {
        if let Some(key) = self.table.keys().next() {
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            return Err(ConfigError::invalid(
                self.path(key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(())
    }
}
