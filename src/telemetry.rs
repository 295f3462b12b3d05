//! Tracing subscriber set-up and error-chain formatting. A leaf: knows nothing of shoal.

use std::error::Error;
use std::fmt::Write as _;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// librqbit's own logging is chatty at info (every hash check, every peer); shoal reports
/// what matters itself. Its warnings (e.g. a peer sending bad pieces) still show. Its task
/// wrapper logs an error for every torrent stopped on purpose, so that one is off.
const LIBRQBIT_QUIET: &str =
    "librqbit=warn,librqbit_core=warn,librqbit_core::spawn_utils=off,librqbit_tracker_comms=warn";

/// The filter for `spec`, with librqbit quieted unless `spec` says otherwise about it.
pub fn filter(spec: &str) -> EnvFilter {
    let spec = if spec.contains("librqbit") {
        spec.to_owned()
    } else {
        format!("{spec},{LIBRQBIT_QUIET}")
    };
    EnvFilter::new(spec)
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(cfg: &LogConfig) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| s.parse::<EnvFilter>().is_ok())
        .unwrap_or_else(|| cfg.level.clone());
    let filter = filter(&spec);
    // Colours only for a person at a terminal: files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // try_init: tests and embedders may have installed one already.
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `error: cause: cause`, for logs; each error's own text carries only its own part.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let _ = write!(out, ": {e}");
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_prints_causes() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::chain(&e), "outer: inner");
    }
}
