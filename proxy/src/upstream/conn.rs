//! One connection to PostgreSQL: connect, authenticate (trust, cleartext, md5, SCRAM-SHA-256)
//! and the per-connection state the session relies on (statement cache, applied settings),
//! private to `upstream` (sessions use `held.rs`'s methods).

use bytes::{Bytes, BytesMut};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, ParameterStatus, Password, PasswordMessageFamily,
    SASLInitialResponse, SASLResponse, SecretKey, Startup,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::prepared::Prepared;
use super::stream::ServerStream;
use super::UpstreamError;
use crate::cancel::{BackendKey, Fence};
use crate::config::UpstreamConfig;
use crate::scram::{self, ClientExchange};
use crate::wire;

/// A Sync message.
pub(super) const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// The largest message PostgreSQL sends during startup that we accept.
const STARTUP_MAX: usize = 1 << 20;

/// An authenticated connection to PostgreSQL.
#[derive(Debug)]
pub struct ServerConn {
    pub(super) id: u64,
    pub(super) stream: ServerStream,
    /// Bytes read from the server and not yet processed.
    pub(super) rbuf: BytesMut,
    pub(super) key: BackendKey,
    /// ParameterStatus values PostgreSQL reported at startup.
    pub(super) startup_params: Vec<(String, String)>,
    /// Server-side names of the statements prepared on this connection.
    pub(super) prepared: Prepared,
    /// Hash of the SQL and types of the unnamed statement, when this proxy parsed it.
    pub(super) unnamed: Option<u64>,
    /// Fingerprint of the client settings applied on this connection (0 = server defaults).
    pub(super) settings: u64,
    /// The tenant context (`orgwall.tenant`) Orgwall set on this connection.
    pub(super) context: super::context::Context,
    /// Cancels forwarded to its backend: none may land on another client's statement.
    pub(super) fence: std::sync::Arc<Fence>,
    /// Its entry in the pool's `SHOW SERVERS` listing (pooled connections only).
    pub(super) listed: Option<super::listing::Listed>,
}

impl ServerConn {
    /// Connects and authenticates, bounded by the configured connect timeout.
    pub async fn connect(
        cfg: &UpstreamConfig,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
        id: u64,
    ) -> Result<ServerConn, UpstreamError> {
        tokio::time::timeout(
            cfg.connect_timeout,
            Self::connect_inner(cfg, tls, id, false),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(cfg.connect_timeout))?
    }

    /// Connects with `replication=database` (a walsender connection for the balance cache's
    /// logical replication feed; it accepts replication commands and simple queries).
    pub async fn connect_replication(
        cfg: &UpstreamConfig,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
        id: u64,
    ) -> Result<ServerConn, UpstreamError> {
        tokio::time::timeout(cfg.connect_timeout, Self::connect_inner(cfg, tls, id, true))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(cfg.connect_timeout))?
    }

    async fn connect_inner(
        cfg: &UpstreamConfig,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
        id: u64,
        replication: bool,
    ) -> Result<ServerConn, UpstreamError> {
        let stream = ServerStream::connect(cfg, tls).await?;
        let mut conn = ServerConn {
            id,
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            key: BackendKey {
                host: cfg.host.clone(),
                port: cfg.port,
                pid: 0,
                secret: SecretKey::I32(0),
            },
            startup_params: Vec::new(),
            prepared: Prepared::default(),
            unnamed: None,
            settings: 0,
            context: super::context::Context::Unknown,
            fence: Default::default(),
            listed: None,
        };
        let mut startup = Startup::new();
        startup.parameters.insert("user".into(), cfg.user.clone());
        startup
            .parameters
            .insert("database".into(), cfg.database.clone());
        startup
            .parameters
            .insert("application_name".into(), "orgwall".into());
        if replication {
            startup
                .parameters
                .insert("replication".into(), "database".into());
        }
        let mut out = BytesMut::new();
        wire::put(&mut out, &startup);
        conn.send(&out).await?;
        conn.authenticate(cfg).await?;
        conn.finish_startup().await?;
        Ok(conn)
    }

    /// Writes `bytes` to PostgreSQL, all of them.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(UpstreamError::Io)
    }

    /// Reads one whole message of at most `max` bytes.
    pub async fn next_frame(&mut self, max: usize) -> Result<BytesMut, UpstreamError> {
        loop {
            if let Some(f) = wire::split_frame(&mut self.rbuf, max)? {
                return Ok(f);
            }
            if self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(UpstreamError::Io)?
                == 0
            {
                return Err(UpstreamError::Closed);
            }
        }
    }

    /// Reads one whole message during startup; an ErrorResponse is the error.
    async fn read_frame(&mut self) -> Result<BytesMut, UpstreamError> {
        let f = self.next_frame(STARTUP_MAX).await?;
        if f[0] == b'E' {
            return Err(UpstreamError::rejected(&f));
        }
        Ok(f)
    }

    async fn send_password(&mut self, msg: PasswordMessageFamily) -> Result<(), UpstreamError> {
        let mut out = BytesMut::new();
        wire::put(&mut out, &msg);
        self.send(&out).await
    }

    async fn authenticate(&mut self, cfg: &UpstreamConfig) -> Result<(), UpstreamError> {
        let password = || cfg.password.clone().ok_or(UpstreamError::PasswordRequired);
        loop {
            let f = self.read_frame().await?;
            let auth: Authentication = wire::decode(f, "Authentication")?;
            match auth {
                Authentication::Ok => return Ok(()),
                Authentication::CleartextPassword => {
                    let pw = Password::new(password()?);
                    self.send_password(PasswordMessageFamily::Password(pw))
                        .await?;
                }
                Authentication::MD5Password(salt) => {
                    let salt: [u8; 4] = salt.try_into().map_err(|_| UpstreamError::Protocol)?;
                    let pw = scram::md5_password(&cfg.user, &password()?, &salt);
                    self.send_password(PasswordMessageFamily::Password(Password::new(pw)))
                        .await?;
                }
                Authentication::SASL(mechs) if mechs.iter().any(|m| m == "SCRAM-SHA-256") => {
                    self.scram(&password()?).await?;
                    return self.expect_auth_ok().await;
                }
                other => return Err(UpstreamError::UnsupportedAuth(format!("{other:?}"))),
            }
        }
    }

    async fn scram(&mut self, password: &str) -> Result<(), UpstreamError> {
        let (mut ex, first) = ClientExchange::start(password);
        let init = SASLInitialResponse::new(
            "SCRAM-SHA-256".into(),
            Some(Bytes::from(first.into_bytes())),
        );
        self.send_password(PasswordMessageFamily::SASLInitialResponse(init))
            .await?;
        let server_first = match wire::decode(self.read_frame().await?, "SASLContinue")? {
            Authentication::SASLContinue(d) => d,
            _ => return Err(UpstreamError::Protocol),
        };
        let fin = ex
            .respond(&String::from_utf8_lossy(&server_first))
            .map_err(UpstreamError::Scram)?;
        let resp = SASLResponse::new(Bytes::from(fin.into_bytes()));
        self.send_password(PasswordMessageFamily::SASLResponse(resp))
            .await?;
        match wire::decode(self.read_frame().await?, "SASLFinal")? {
            Authentication::SASLFinal(d) => ex
                .finish(&String::from_utf8_lossy(&d))
                .map_err(UpstreamError::Scram),
            _ => Err(UpstreamError::Protocol),
        }
    }

    async fn expect_auth_ok(&mut self) -> Result<(), UpstreamError> {
        match wire::decode(self.read_frame().await?, "AuthenticationOk")? {
            Authentication::Ok => Ok(()),
            _ => Err(UpstreamError::Protocol),
        }
    }

    async fn finish_startup(&mut self) -> Result<(), UpstreamError> {
        loop {
            let f = self.read_frame().await?;
            match f[0] {
                b'S' => {
                    let p: ParameterStatus = wire::decode(f, "ParameterStatus")?;
                    self.startup_params.push((p.name, p.value));
                }
                b'K' => {
                    let k: BackendKeyData = wire::decode(f, "BackendKeyData")?;
                    self.key.pid = k.pid;
                    self.key.secret = k.secret_key;
                }
                b'Z' => return Ok(()),
                _ => {} // NoticeResponse and the like
            }
        }
    }

    /// Runs one simple query on an idle connection and returns its rows as text. For Orgwall's
    /// own housekeeping (catalog discovery, read-your-writes positions), never for client
    /// statements. A simple query destroys the unnamed prepared statement, so it is forgotten.
    pub async fn query_text(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        let mut rows = Vec::new();
        self.query_each(sql, |r| rows.push(r)).await?;
        Ok(rows)
    }

    /// [`query_text`](Self::query_text) handing each row to `each` as it arrives instead of
    /// collecting them (the balance cache's initial load: millions of rows).
    pub async fn query_each(
        &mut self,
        sql: &str,
        mut each: impl FnMut(Vec<Option<String>>),
    ) -> Result<(), UpstreamError> {
        self.unnamed = None;
        let mut out = BytesMut::new();
        wire::put(
            &mut out,
            &pgwire::messages::simplequery::Query::new(sql.to_string()),
        );
        self.send(&out).await?;
        let mut failure = None;
        loop {
            let f = self.next_frame(usize::MAX >> 1).await?;
            match f[0] {
                b'D' => each(wire::data_row_text(&f).ok_or(UpstreamError::Protocol)?),
                b'E' => failure = Some(UpstreamError::rejected(&f)),
                b'Z' => break,
                _ => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Runs one statement with text parameters (extended protocol, unnamed statement) on an idle
    /// connection, for Orgwall's own housekeeping; its rows are not kept.
    pub async fn execute_params(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<(), UpstreamError> {
        use bytes::BufMut;
        self.unnamed = None;
        let mut out = BytesMut::new();
        let mut msg = |tag: u8, body: &[u8]| {
            out.put_u8(tag);
            out.put_i32(body.len() as i32 + 4);
            out.extend_from_slice(body);
        };
        let mut parse = BytesMut::new();
        parse.put_u8(0);
        parse.extend_from_slice(sql.as_bytes());
        parse.put_u8(0);
        parse.put_i16(0);
        msg(b'P', &parse);
        let mut bind = BytesMut::new();
        bind.put_u16(0); // unnamed portal, unnamed statement
        bind.put_i16(0);
        bind.put_i16(params.len() as i16);
        for p in params {
            bind.put_i32(p.len() as i32);
            bind.extend_from_slice(p.as_bytes());
        }
        bind.put_i16(0);
        msg(b'B', &bind);
        msg(b'E', &[0, 0, 0, 0, 0]);
        msg(b'S', &[]);
        self.run_synced(&out).await
    }

    /// Sends extended-protocol messages ending in Sync and waits for ReadyForQuery; the first
    /// error PostgreSQL reported, if any.
    async fn run_synced(&mut self, out: &[u8]) -> Result<(), UpstreamError> {
        self.send(out).await?;
        let mut failure = None;
        loop {
            let f = self.next_frame(usize::MAX >> 1).await?;
            match f[0] {
                b'E' => failure = failure.or(Some(UpstreamError::rejected(&f))),
                b'Z' => break,
                _ => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Makes sure no cancel forwarded to this idle connection's backend can still land: waits
    /// until PostgreSQL has processed each, then runs a Sync (a signal still pending is
    /// dropped by the idle backend, or fails the Sync, which then answers `57014`). Fails when
    /// a cancel was never confirmed: the connection must be closed.
    pub async fn absorb_cancels(&mut self) -> Result<(), UpstreamError> {
        if self.fence.broken() {
            return Err(UpstreamError::Closed);
        }
        let mark = self.fence.settled().await;
        if self.fence.broken() {
            return Err(UpstreamError::Closed);
        }
        match self.run_synced(&SYNC).await {
            Ok(()) => {}
            Err(UpstreamError::Rejected { code, .. }) if code == "57014" => {}
            Err(e) => return Err(e),
        }
        self.fence.absorbed(mark);
        Ok(())
    }

    /// For a share of a multiplexed connection that reported what a tenant connection never
    /// may (the tripwire): the connection takes no more batches and closes.
    pub fn poison(&self) {
        if let ServerStream::Pipe(p) = &self.stream {
            p.poison();
        }
    }

    /// Sets the tenant context to `token` (a Bind parameter, never SQL text) on an idle
    /// connection, and waits for PostgreSQL's answer.
    pub async fn set_context(&mut self, token: &str) -> Result<(), UpstreamError> {
        let mut out = BytesMut::new();
        super::context::put_set_context(&mut out, token, true, None);
        self.run_synced(&out).await
    }

    /// True when the idle connection has nothing to say: an idle backend that sent bytes (or
    /// closed) was terminated or restarted, and must not be handed to a client.
    pub fn looks_alive(&mut self) -> bool {
        self.stream.looks_idle()
    }
}
