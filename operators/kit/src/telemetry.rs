//! Structured logs with `tracing`: text for a terminal, JSON for a log
//! pipeline, levels from `RUST_LOG`.
//!
//! The format comes from `--log-format json|text` on the command line, else
//! `HOMELAB_LOG_FORMAT`, else text. The filter comes from `RUST_LOG`
//! (e.g. `info,homelab_kit=debug`), else `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::Error;

/// Environment variable choosing the log format.
pub const LOG_FORMAT_ENV: &str = "HOMELAB_LOG_FORMAT";
/// Command-line flag choosing the log format.
pub const LOG_FORMAT_FLAG: &str = "--log-format";

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with the current span's fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" | "plain" | "" => Ok(Self::Text),
            _ => Err(Error::InvalidSetting {
                name: LOG_FORMAT_ENV,
                value: s.to_owned(),
                expected: "json or text",
            }),
        }
    }
}

impl LogFormat {
    /// The format from command-line arguments (`--log-format json` or
    /// `--log-format=json`), else from the environment variable's value.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an unknown format.
    pub fn from_args_or_env(
        args: impl IntoIterator<Item = String>,
        env: Option<String>,
    ) -> Result<Self, Error> {
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == LOG_FORMAT_FLAG {
                return args.next().unwrap_or_default().parse();
            }
            if let Some(value) = arg
                .strip_prefix(LOG_FORMAT_FLAG)
                .and_then(|v| v.strip_prefix('='))
            {
                return value.parse();
            }
        }
        env.map_or(Ok(Self::Text), |v| v.parse())
    }
}

/// Installs the global subscriber, reading the format from the process's
/// arguments and environment.
///
/// # Errors
/// [`Error::InvalidSetting`] for an unknown format, [`Error::Telemetry`] if
/// a subscriber is already installed.
pub fn init() -> Result<(), Error> {
    let format =
        LogFormat::from_args_or_env(std::env::args().skip(1), std::env::var(LOG_FORMAT_ENV).ok())?;
    init_with(format)
}

/// Installs the global subscriber with the given format.
///
/// # Errors
/// [`Error::Telemetry`] if a subscriber is already installed.
pub fn init_with(format: LogFormat) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.try_init(),
        // The current span's fields (the reconcile's controller, kind, namespace,
        // name, generation) go under `span`: every line inside a reconcile names
        // its object.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    }
    .map_err(Error::Telemetry)
}

/// Whether text logs are coloured: only on a terminal, and not with `NO_COLOR`
/// set to anything but the empty string (no-color.org). `kubectl logs`,
/// journald and log shippers read a pod's stdout as a file, where escape codes
/// are noise.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(!colour(false, None), "a pod's stdout is not a terminal");
        assert!(colour(true, None));
        assert!(!colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(colour(true, Some(std::ffi::OsStr::new(""))));
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flag_beats_env() {
        let f = LogFormat::from_args_or_env(args(&["--log-format", "json"]), Some("text".into()));
        assert_eq!(f.unwrap(), LogFormat::Json);
        let f = LogFormat::from_args_or_env(args(&["--log-format=text"]), Some("json".into()));
        assert_eq!(f.unwrap(), LogFormat::Text);
    }

    #[test]
    fn env_then_default() {
        assert_eq!(
            LogFormat::from_args_or_env(args(&[]), Some("JSON".into())).unwrap(),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::from_args_or_env(args(&["run"]), None).unwrap(),
            LogFormat::Text
        );
    }

    #[test]
    fn json_lines_name_the_reconciled_object() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        // As init_with builds it.
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "reconcile",
                controller = "mediaserver-controller",
                kind = "MediaServer",
                namespace = "home",
                object = "jellyfin",
            );
            let _entered = span.enter();
            tracing::info!(node = "n100-1", "placed");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "placed", "{text}");
        assert_eq!(line["node"], "n100-1", "{text}");
        assert_eq!(line["span"]["namespace"], "home", "{text}");
        assert_eq!(line["span"]["object"], "jellyfin", "{text}");
        assert_eq!(line["span"]["name"], "reconcile", "{text}");
        assert_eq!(line["span"]["kind"], "MediaServer", "{text}");
    }

    #[test]
    fn unknown_format_is_refused() {
        let err = LogFormat::from_args_or_env(args(&[]), Some("yaml".into())).unwrap_err();
        assert!(err.to_string().contains("json or text"), "{err}");
    }
}
