//! The one way shoal spawns a long-lived task: named, inside a span with that name, and its
//! error logged once, here, with its whole chain. A leaf.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::Instrument;

/// Spawns `fut` as the task `name`. An `Err` it ends with is logged (once) at error level.
pub fn spawn<E>(
    name: &'static str,
    fut: impl Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<()>
where
    E: std::error::Error + 'static,
{
    let span = tracing::info_span!("task", name);
    tokio::spawn(
        async move {
            if let Err(e) = fut.await {
                tracing::error!(task = name, error = %crate::telemetry::chain(&e), "task failed");
            }
        }
        .instrument(span),
    )
}
