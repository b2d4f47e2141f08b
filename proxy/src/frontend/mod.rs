//! One client's handshake: SSLRequest/GSSENCRequest negotiation, TLS, the startup packet,
//! SCRAM-SHA-256 login, cancel requests, and the greeting (ParameterStatus, BackendKeyData).
//!
//! Everything before `ReadyForQuery` happens here; the result is a [`Login`] for `session`.

mod auth;
mod error;
mod options;
mod stream;

use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use pgwire::messages::startup::{
    BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::{DecodeContext, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub use error::{FrontendError, LoginRefused};
pub use stream::{tls_acceptor, ClientStream};

use crate::admission::{AdmissionError, ClientSlot};
use crate::cancel::CancelHandle;
use crate::clients::{ClientRegistry, Registered};
use crate::config::Role;
use crate::errors::ClientError;
use crate::state::ProxyState;
use crate::upstream::UpstreamError;
use crate::wire::{self, WireError};

/// Startup-phase messages are small; anything bigger is an attack or a bug.
const STARTUP_MAX: usize = 64 * 1024;
const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;

/// Who logged in.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub org_id: String,
    pub role: Role,
    /// The login's own cap on server connections (`[[users]] max_server_connections`).
    pub max_server_connections: Option<usize>,
    /// The login's own limit on sessions (`[[users]] max_client_connections`).
    pub max_client_connections: Option<usize>,
}

/// A logged-in client, greeted and ready for its first query.
pub struct Login<S = ClientStream> {
    pub stream: S,
    /// Bytes the client already sent after its login.
    pub buf: BytesMut,
    pub principal: Principal,
    /// Run-time settings the client asked for in its startup packet (name, value).
    pub settings: Vec<(String, String)>,
    /// The ParameterStatus values the client was sent at login (name, value).
    pub reported: Vec<(String, String)>,
    pub cancel: CancelHandle,
    /// The second wall, for tenant and switcher logins (`None`: turned off, or an admin).
    pub wall: Option<std::sync::Arc<crate::boundary::Wall>>,
    /// Its place among `max_client_connections`, held until the session ends.
    pub slot: ClientSlot,
    /// Its place among its login's `[[users]] max_client_connections`.
    pub user_slot: crate::clients::UserSlot,
}

impl Login {
    /// Lists the client in `registry` (`SHOW CLIENTS`) until the guard is dropped.
    pub fn register(&self, registry: &Arc<ClientRegistry>, peer: &impl fmt::Display) -> Registered {
        let p = &self.principal;
        let app = self
            .settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("application_name"))
            .map_or("", |(_, v)| v.as_str());
        registry.register(
            self.cancel.pid,
            &p.user,
            p.role,
            &p.org_id,
            peer.to_string(),
            self.stream.is_tls(),
            app,
        )
    }
}

/// Runs the handshake. `Ok(None)` means the connection carried a cancel request or closed.
/// The client's part (TLS, startup, authentication) must end within `startup_timeout` and
/// before `evicted` resolves (a newer connection took its place at the startup gate); a
/// logged-in client then takes a slot of `max_client_connections` or is refused (`53300`).
pub async fn handshake(
    mut stream: ClientStream,
    state: &ProxyState,
    evicted: impl std::future::Future<Output = ()>,
) -> Result<Option<Login>, FrontendError> {
    let mut buf = BytesMut::with_capacity(1024);
    let timeout = state.config.startup_timeout;
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, negotiate(&mut stream, &mut buf, state)) => {
            r.unwrap_or(Err(FrontendError::Timeout))
        }
        () = evicted => Err(FrontendError::Admission(AdmissionError::Evicted)),
    };
    match result {
        Ok(Some((principal, settings))) => {
            let slot = match state.clients.take(principal.role == Role::Admin) {
                Ok(slot) => slot,
                Err(e) => return Err(report(&mut stream, FrontendError::Admission(e)).await),
            };
            let user_slot = match state
                .registry
                .reserve(&principal.user, principal.max_client_connections)
            {
                Ok(s) => s,
                Err(e) => return Err(report(&mut stream, FrontendError::Admission(e)).await),
            };
            // Fail closed: no tenant work before PostgreSQL's own wall is known to stand.
            let wall = match principal.role {
                Role::Admin => Ok(None),
                _ => state.wall().await,
            };
            let wall = match wall {
                Ok(w) => w,
                Err(e) => {
                    return Err(report(&mut stream, FrontendError::Wall(e)).await);
                }
            };
            let cancel = state.cancel.register();
            match greet(&mut stream, state, principal.role, &settings, &cancel).await {
                Ok(reported) => Ok(Some(Login {
                    stream,
                    buf,
                    principal,
                    settings,
                    reported,
                    cancel,
                    wall,
                    slot,
                    user_slot,
                })),
                Err(e) => Err(report(&mut stream, e).await),
            }
        }
        Ok(None) => Ok(None),
        Err(e) => Err(report(&mut stream, e).await),
    }
}

/// Sends the client the error that ends its handshake, if it has one. Bounded: a client that
/// reads nothing (an idle socket at the startup gate) must not hold the task.
async fn report(stream: &mut ClientStream, e: FrontendError) -> FrontendError {
    if let Some(ce) = e.client_error() {
        let mut out = BytesMut::new();
        ClientError { fatal: true, ..ce }.write(&mut out);
        let _ = tokio::time::timeout(REPORT_TIMEOUT, async {
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
    e
}

/// How long a handshake's closing error may take to write.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads one tagged message, reading more bytes as needed.
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, FrontendError> {
    loop {
        if let Some(f) = wire::split_frame(buf, STARTUP_MAX)? {
            return Ok(f);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(FrontendError::Closed);
        }
    }
}

async fn read_startup_packet(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, FrontendError> {
    loop {
        if let Some(p) = wire::split_startup(buf, STARTUP_MAX)? {
            return Ok(p);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(FrontendError::Closed);
        }
    }
}

type Negotiated = (Principal, Vec<(String, String)>);

async fn negotiate(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    state: &ProxyState,
) -> Result<Option<Negotiated>, FrontendError> {
    loop {
        let packet = read_startup_packet(stream, buf).await?;
        let code = wire::be_i32(&packet[4..]).unwrap_or(0);
        match code {
            SSL_REQUEST => {
                if !buf.is_empty() {
                    // Bytes after SSLRequest would be read in plaintext: refuse (CVE-2021-23214).
                    return Err(WireError::Malformed("SSLRequest followed by data").into());
                }
                let upgradable = matches!(stream, ClientStream::Plain(_));
                let Some(acceptor) = state.tls.as_ref().filter(|_| upgradable) else {
                    stream.write_all(b"N").await?;
                    continue;
                };
                stream.write_all(b"S").await?;
                let ClientStream::Plain(tcp) = std::mem::replace(stream, ClientStream::Upgrading)
                else {
                    return Err(WireError::Malformed("SSLRequest").into());
                };
                let tls = acceptor.accept(tcp).await.map_err(FrontendError::Tls)?;
                *stream = ClientStream::Tls(Box::new(tls));
            }
            GSSENC_REQUEST => stream.write_all(b"N").await?,
            CANCEL_REQUEST => {
                let mut body = &packet[8..];
                if body.len() < 8 {
                    return Err(WireError::Malformed("CancelRequest").into());
                }
                let pid = body.get_i32();
                let secret = SecretKey::I32(body.get_i32());
                state.cancel.cancel(pid, &secret).await;
                return Ok(None);
            }
            _ => return startup(stream, buf, packet, state).await.map(Some),
        }
    }
}

async fn startup(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    mut packet: BytesMut,
    state: &ProxyState,
) -> Result<Negotiated, FrontendError> {
    let startup = Startup::decode(&mut packet, &DecodeContext::default())
        .ok()
        .flatten()
        .ok_or(WireError::Malformed("startup packet"))?;
    // Users, passwords and roles as of the last reload.
    let cfg = state.current();
    let pq_options: Vec<String> = startup
        .parameters
        .keys()
        .filter(|k| k.starts_with("_pq_."))
        .cloned()
        .collect();
    if startup.protocol_number_minor > 0 || !pq_options.is_empty() {
        let mut out = BytesMut::new();
        wire::put(&mut out, &NegotiateProtocolVersion::new(0, pq_options));
        stream.write_all(&out).await?;
    }
    if cfg.tls.as_ref().is_some_and(|t| t.require) && !stream.is_tls() && !stream.is_local() {
        return Err(LoginRefused::TlsRequired.into());
    }
    let params = startup.parameters;
    let user_name = params.get("user").cloned().unwrap_or_default();
    if user_name.is_empty() {
        return Err(LoginRefused::NoUser.into());
    }
    if params.contains_key("replication") && params["replication"] != "false" {
        return Err(LoginRefused::Replication.into());
    }
    let database = params
        .get("database")
        .cloned()
        .unwrap_or_else(|| user_name.clone());
    let user = cfg.user(&user_name);
    auth::scram(stream, buf, user, &state.decoy)
        .await
        .map_err(|e| match e {
            FrontendError::Scram(_) => LoginRefused::Password(user_name.clone()).into(),
            other => other,
        })?;
    let user = user.ok_or(LoginRefused::NoSuchUser)?;
    if database != cfg.upstream.database {
        return Err(LoginRefused::NoDatabase(database).into());
    }
    let mut settings = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                settings.extend(options::parse_options(&v).map_err(LoginRefused::Options)?)
            }
            _ if k.starts_with("_pq_.") => {}
            _ => settings.push((k, v)),
        }
    }
    options::check(user.role, &settings).map_err(LoginRefused::Setting)?;
    let principal = Principal {
        user: user.name.clone(),
        org_id: user.org_id.clone(),
        role: user.role,
        max_server_connections: user.max_server_connections,
        max_client_connections: user.max_client_connections,
    };
    let span = tracing::Span::current();
    span.record("user", principal.user.as_str());
    if !principal.org_id.is_empty() {
        span.record("org_id", principal.org_id.as_str());
    }
    span.record("role", principal.role.as_str());
    Ok((principal, settings))
}

/// Sends ParameterStatus (the server's, overridden by the client's own settings),
/// the proxy's BackendKeyData and ReadyForQuery; returns the ParameterStatus values sent.
async fn greet(
    stream: &mut ClientStream,
    state: &ProxyState,
    role: Role,
    settings: &[(String, String)],
    cancel: &CancelHandle,
) -> Result<Vec<(String, String)>, FrontendError> {
    let fatal = |e: UpstreamError| {
        tracing::warn!(error = %e, "cannot open a server connection for the greeting");
        FrontendError::Greeting(e)
    };
    let pool = state.pool_for(role);
    let server = pool.server_params().await.map_err(fatal)?;
    let reported = pool
        .reported_values(&server, settings)
        .await
        .map_err(FrontendError::Setting)?;
    let mut out = BytesMut::new();
    for (name, value) in &reported {
        wire::put(&mut out, &ParameterStatus::new(name.clone(), value.clone()));
    }
    wire::put(
        &mut out,
        &BackendKeyData::new(cancel.pid, SecretKey::I32(cancel.secret)),
    );
    wire::put_ready(&mut out, b'I');
    stream.write_all(&out).await?;
    Ok(reported)
}
