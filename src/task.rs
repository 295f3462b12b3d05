//! Named background tasks: each runs in its own span and logs its error once, here.

use std::error::Error;
use std::future::Future;

use tracing::Instrument;

/// Spawns `fut` in a span named after the task; an `Err` is logged with its cause chain.
pub fn spawn<F, E>(name: &'static str, fut: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Error + Send + Sync + 'static,
{
    tokio::spawn(
        async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %crate::telemetry::chain(&e), "task failed");
            }
        }
        .instrument(tracing::info_span!("task", name)),
    )
}
