//! The process's log output: format (`log_format = "text" | "json"`), colour (only on a terminal,
//! never with `NO_COLOR`), the level filter (`RUST_LOG`, default `info`), the cap that keeps
//! dependency crates' debug output (which can print SQL text and parameters) out of the log,
//! and [`Throttle`], which rate-limits warnings that a flood of clients could repeat.
//!
//! Invariant: no record from another crate below INFO is ever written, whatever `RUST_LOG`
//! says; Orgwall's own records name statements by fingerprint, never by text.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, span fields (peer, user, org_id, role) in front.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// `span` and `spans` (the connection's peer, user, org_id and role).
    Json,
}

/// Whether colour codes may be written: only to a terminal, and never when `NO_COLOR` is set
/// to anything non-empty (<https://no-color.org>).
pub fn use_colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Whether a record passes the dependency cap: Orgwall's own at any level the filter allows,
/// other crates' (sqlparser, tokio-postgres, wasmtime, rustls …) only at INFO and above.
pub fn allowed_target(target: &str, level: &tracing::Level) -> bool {
    is_orgwall(target) || *level <= tracing::Level::INFO
}

fn is_orgwall(target: &str) -> bool {
    target == "orgwall" || target.starts_with("orgwall::")
}

/// Installs the global subscriber writing to stderr. `RUST_LOG` (default `info`) sets the
/// levels. Called once by the binary; a second call (tests) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let cap = filter_fn(|meta| allowed_target(meta.target(), meta.level()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let layer = match format {
        LogFormat::Text => fmt.with_filter(cap).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(cap)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

/// Lets one event through per `every`, counting the ones it held back, so that a flood (a
/// burst of clients refused at the connection limit) writes a line a second, not a line each.
pub struct Throttle {
    every: Duration,
    last: Mutex<Option<std::time::Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when an event at `now` should be logged, `n` being how many were held back
    /// since the last one logged; `None` when it is held back.
    pub fn admit(&self, now: std::time::Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if now.saturating_duration_since(at) < self.every => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tracing::Level;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        for (terminal, no_color, want) in [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ] {
            assert_eq!(
                use_colour(terminal, no_color),
                want,
                "{terminal} {no_color:?}"
            );
        }
    }

    #[test]
    fn dependencies_are_capped_at_info() {
        for (target, level, want) in [
            ("orgwall", Level::DEBUG, true),
            ("orgwall::session::route", Level::TRACE, true),
            ("sqlparser::parser", Level::DEBUG, false),
            ("tokio_postgres::query", Level::DEBUG, false),
            ("tokio_postgres::query", Level::INFO, true),
            ("orgwallish", Level::DEBUG, false),
            ("wasmtime", Level::WARN, true),
        ] {
            assert_eq!(allowed_target(target, &level), want, "{target} {level}");
        }
    }

    #[test]
    fn throttle_lets_one_through_per_period_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        assert_eq!(t.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(900)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(1000)), Some(2));
        assert_eq!(t.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(3)), Some(1));
    }
}
