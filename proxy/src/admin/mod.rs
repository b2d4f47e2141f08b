//! The operations endpoint on `[admin] listen` (off by default): `GET /metrics` (Prometheus
//! text, [`crate::metrics`]) and `GET /healthz` (200 when PostgreSQL answers and, with the second
//! wall, its start-up check passed; 503 with the reason otherwise), over a minimal HTTP/1.1
//! exchange: one request per connection, bounded in size and time.
//!
//! Invariant: nothing here changes the proxy's state; a slow or hostile HTTP client holds at
//! most one small buffer for at most [`REQUEST_TIMEOUT`].

pub mod console;
pub mod reload;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::ProxyState;

/// A request must arrive whole within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests are a line and a few headers; anything longer is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// How long `/healthz` waits for a server connection.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the endpoint until the proxy starts draining.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = state.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, state.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, state: Arc<ProxyState>) {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let (status, body) = match request {
        Ok(Some(head)) => match route(&head) {
            Ok(Path::Metrics) => ("200 OK", metrics_text(&state)),
            Ok(Path::Health) => health(&state).await,
            Err(status) => (status, format!("{status}\n")),
        },
        Ok(None) => ("400 Bad Request", "bad request\n".into()),
        Err(_) => return,
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the end of the request head; `None` if it is too long or the client left.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).ok();
        }
        if buf.len() >= MAX_REQUEST {
            return None;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Path {
    Metrics,
    Health,
}

/// The resource a request head asks for, or the status that refuses it.
fn route(head: &str) -> Result<Path, &'static str> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("400 Bad Request");
    }
    if method != "GET" {
        return Err("405 Method Not Allowed");
    }
    match target.split('?').next() {
        Some("/metrics") => Ok(Path::Metrics),
        Some("/healthz") => Ok(Path::Health),
        _ => Err("404 Not Found"),
    }
}

fn metrics_text(state: &ProxyState) -> String {
    let pools: Vec<_> = console::named_pools(state)
        .into_iter()
        .map(|(name, pool)| (name, pool.snapshot()))
        .collect();
    let balances = state.balances.as_ref().map(|b| b.stats());
    state
        .metrics
        .render(&pools, balances, state.planner.counts())
}

/// Whether PostgreSQL gives the owner pool a connection, and whether the second wall stands.
async fn health(state: &ProxyState) -> (&'static str, String) {
    let postgres = match tokio::time::timeout(HEALTH_TIMEOUT, state.pool.acquire()).await {
        Ok(Ok(lease)) => {
            state.pool.release(lease);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no server connection within {HEALTH_TIMEOUT:?}")),
    };
    let wall = match (&postgres, &state.tenant_pool) {
        (_, None) => Ok("off ([tenancy] enforce_in_postgres = false)".to_string()),
        (Err(_), Some(_)) => Err("not checked: PostgreSQL unavailable".to_string()),
        (Ok(()), Some(_)) => state
            .wall()
            .await
            .map(|_| "ok".to_string())
            .map_err(|e| e.to_string()),
    };
    let line = |what: &str, r: &Result<String, String>| match r {
        Ok(s) => format!("{what}: {s}\n"),
        Err(e) => format!("{what}: FAILED: {e}\n"),
    };
    let healthy = postgres.is_ok() && wall.is_ok();
    let body = line("postgres", &postgres.map(|()| "ok".to_string())) + &line("second_wall", &wall);
    match healthy {
        true => ("200 OK", body),
        false => ("503 Service Unavailable", body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_requests_only() {
        for (head, want) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(Path::Metrics),
            ),
            ("GET /healthz?verbose=1 HTTP/1.0\r\n\r\n", Ok(Path::Health)),
            ("GET / HTTP/1.1\r\n\r\n", Err("404 Not Found")),
            (
                "POST /metrics HTTP/1.1\r\n\r\n",
                Err("405 Method Not Allowed"),
            ),
            ("GET /metrics\r\n\r\n", Err("400 Bad Request")),
            ("GET /metrics SPDY/3\r\n\r\n", Err("400 Bad Request")),
        ] {
            assert_eq!(route(head), want, "{head:?}");
        }
    }
}
