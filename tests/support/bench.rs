//! Benchmark figures. `make bench` (`e2e/bench/run`) sets `HOMELAB_BENCH=1` and runs
//! the scenarios that measure something; each scenario [`record`]s its figures
//! into one flat JSON object, `target/bench/results.json` (or the file
//! `HOMELAB_BENCH_RESULTS` names), under the names the README's Performance table
//! uses (`failover_s.operator`, `device_move_s`, ...).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::{Error, workspace_root};

/// Set by `make bench`: measure what only a benchmark waits for.
#[must_use]
pub fn enabled() -> bool {
    std::env::var_os("HOMELAB_BENCH").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Where the figures go.
#[must_use]
pub fn results_path() -> PathBuf {
    std::env::var_os("HOMELAB_BENCH_RESULTS").map_or_else(
        || {
            workspace_root()
                .join("target")
                .join("bench")
                .join("results.json")
        },
        PathBuf::from,
    )
}

/// Merges `key: value` into the results file (created if missing), rounded to
/// what the figure can honestly claim (3 significant decimals).
///
/// # Errors
/// The file cannot be read, parsed or written.
pub fn record(key: &str, value: impl Into<Value>) -> Result<(), Error> {
    let path = results_path();
    let shown = path.display().to_string();
    let mut results = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_json::from_str::<Map<String, Value>>(&text).map_err(Error::Json)?
        }
        Ok(_) => Map::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(source) => {
            return Err(Error::ReadFile {
                path: shown,
                source,
            });
        }
    };
    let value = match value.into() {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() != 0.0)
            .and_then(|f| serde_json::Number::from_f64((f * 1000.0).round() / 1000.0))
            .map_or(Value::Number(n), Value::Number),
        other => other,
    };
    results.insert(key.to_owned(), value);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(&results).map_err(Error::Json)?;
    std::fs::write(&path, text + "\n").map_err(|source| Error::WriteFile {
        path: shown,
        source,
    })?;
    eprintln!("bench: {key} = {}", results[key]);
    Ok(())
}
