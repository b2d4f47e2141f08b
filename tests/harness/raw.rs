//! A raw wire-protocol client for what real drivers never send: garbage bytes, absurd length
//! prefixes, a GSSENCRequest, a socket dropped mid-transaction. It does the startup and
//! SCRAM-SHA-256 exchange with `postgres-protocol` (an implementation independent of the
//! proxy's) and otherwise reads and writes bytes.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its tag byte and body (without the length word).
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse/NoticeResponse (`b'C'` = SQLSTATE, `b'M'` = message).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }

    /// A short human-readable form: the tag, plus SQLSTATE and message for errors/notices.
    pub fn summary(&self) -> String {
        match (self.field(b'C'), self.field(b'M')) {
            (Some(c), Some(m)) if matches!(self.tag, b'E' | b'N') => {
                format!("{} {c}: {m}", self.tag as char)
            }
            _ => format!("{} ({} bytes)", self.tag as char, self.body.len()),
        }
    }

    fn int32(&self) -> Option<i32> {
        self.body
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// How a connection ended when the test waited for the proxy to close it.
#[derive(Debug)]
pub struct Ending {
    /// Complete messages received before the end.
    pub messages: Vec<Msg>,
    /// True if the peer closed (EOF or reset); false if the wait timed out with the socket open.
    pub closed: bool,
}

/// The tags of `msgs`, as text (`"12DCZ"`).
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// Appends Bind of `statement` (unnamed portal) with text parameters, Execute and Sync.
pub fn bind_text_execute_sync(out: &mut BytesMut, statement: &str, values: &[&str]) {
    bind_text_execute(out, statement, values);
    frontend::sync(out);
}

/// Appends Bind (unnamed portal of `statement`, `values` as text-format parameters, text
/// results) and Execute (all rows).
pub fn bind_text_execute(out: &mut BytesMut, statement: &str, values: &[&str]) {
    frontend::bind(
        "",
        statement,
        [0i16],
        values.iter().copied(),
        |v, buf| {
            buf.extend_from_slice(v.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        out,
    )
    .map_err(|_| "bind encode")
    .expect("bind");
    frontend::execute("", 0, out).expect("execute");
}

/// The first column of every DataRow in `msgs`, as text (`None` for NULL).
pub fn first_column(msgs: &[Msg]) -> Vec<Option<String>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let len = m.body.get(2..6)?;
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            let value = m.body.get(6..6 + usize::try_from(len).ok()?)?;
            Some(String::from_utf8_lossy(value).into_owned())
        })
        .collect()
}

/// The SQLSTATE of the first ErrorResponse in `msgs`.
pub fn error_code(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| m.field(b'C'))
}

/// Appends Parse of `sql` as statement `name`, parameter types left to the server.
pub fn parse(out: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, std::iter::empty::<u32>(), out).expect("parse");
}

/// Appends Bind of `statement` (no parameters) to the unnamed portal, and Execute.
pub fn bind_execute_no_params(out: &mut BytesMut, statement: &str) {
    bind_no_params(out, "", statement);
    frontend::execute("", 0, out).expect("execute");
}

/// Appends Bind of `statement` (no parameters, text results) to `portal`.
pub fn bind_no_params(out: &mut BytesMut, portal: &str, statement: &str) {
    let none: [Option<i32>; 0] = [];
    frontend::bind(
        portal,
        statement,
        [0i16; 0],
        none,
        |_, _| Ok(postgres_protocol::IsNull::Yes),
        [0i16; 0],
        out,
    )
    .map_err(|_| "bind encode")
    .expect("bind");
}

/// Appends Bind (unnamed portal of the unnamed statement, `value` as its one text-format
/// parameter, text results), Execute (all rows) and Sync.
pub fn bind_execute_sync(out: &mut BytesMut, value: i32) {
    bind_execute(out, "", value);
    frontend::sync(out);
}

/// Appends Bind (unnamed portal of `statement`, `value` as its one text-format parameter, text
/// results) and Execute (all rows).
pub fn bind_execute(out: &mut BytesMut, statement: &str, value: i32) {
    bind_text_execute(out, statement, &[&value.to_string()]);
}

/// Appends Bind (unnamed portal of `statement`, `values` as text-format parameters, `None`
/// as NULL, text results) and Execute (all rows).
pub fn bind_execute_text(out: &mut BytesMut, statement: &str, values: &[Option<&str>]) {
    frontend::bind(
        "",
        statement,
        [0i16],
        values.iter().copied(),
        |v, buf| match v {
            Some(v) => {
                buf.extend_from_slice(v.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        [0i16],
        out,
    )
    .map_err(|_| "bind encode")
    .expect("bind");
    frontend::execute("", 0, out).expect("execute");
}

/// A plaintext socket to the proxy speaking the protocol by hand.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The process id BackendKeyData gave at login.
    pub backend_pid: Option<i32>,
}

impl RawConn {
    /// Connects to `proxy` and logs in as the admin user.
    pub async fn admin(proxy: &crate::TestProxy) -> RawConn {
        let mut raw = RawConn::connect(proxy.port).await;
        let admin = crate::ADMIN;
        raw.login(admin.name, admin.password, &proxy.dbname)
            .await
            .unwrap_or_else(|e| panic!("raw login: {:?}", e.field(b'M')));
        raw
    }

    pub async fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("raw connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: BytesMut::new(),
            backend_pid: None,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one message; `Ok(None)` on a clean EOF between messages.
    pub async fn read_msg(&mut self) -> std::io::Result<Option<Msg>> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = usize::try_from(len).unwrap_or(0);
                assert!(len >= 4, "proxy sent a message with length {len}");
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Ok(Some(Msg { tag, body }));
                }
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads one message within `secs`, panicking on timeout or EOF.
    pub async fn expect_msg(&mut self, secs: u64, what: &str) -> Msg {
        match tokio::time::timeout(Duration::from_secs(secs), self.read_msg()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => panic!("{what}: proxy closed the connection"),
            Ok(Err(e)) => panic!("{what}: read error {e}"),
            Err(_) => panic!("{what}: nothing received within {secs}s"),
        }
    }

    /// Sends a GSSENCRequest and returns the single byte the proxy answers with.
    pub async fn gssenc_request(&mut self) -> u8 {
        self.negotiation_request(80877104).await
    }

    /// Sends an SSLRequest and returns the single byte the proxy answers with.
    pub async fn ssl_request(&mut self) -> u8 {
        self.negotiation_request(80877103).await
    }

    async fn negotiation_request(&mut self, code: i32) -> u8 {
        let mut req = Vec::new();
        req.extend_from_slice(&8i32.to_be_bytes());
        req.extend_from_slice(&code.to_be_bytes());
        self.send(&req).await.expect("send negotiation request");
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut b))
            .await
            .expect("answer to negotiation request within 10s")
            .expect("read answer to negotiation request");
        b[0]
    }

    /// Startup + authentication up to the first ReadyForQuery. Returns the authentication
    /// request codes seen (10 = SASL), or the ErrorResponse the proxy sent instead.
    pub async fn login(&mut self, user: &str, password: &str, db: &str) -> Result<Vec<i32>, Msg> {
        self.login_with(user, password, db, &[])
            .await
            .map(|(codes, _)| codes)
    }

    /// [`RawConn::login`] with more startup settings (`extra`); also returns the
    /// ParameterStatus (name, value) pairs of the greeting.
    pub async fn login_with(
        &mut self,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Result<(Vec<i32>, Vec<(String, String)>), Msg> {
        let mut out = BytesMut::new();
        let params = [("user", user), ("database", db)];
        frontend::startup_message(params.iter().chain(extra).copied(), &mut out)
            .expect("encode startup");
        self.send(&out).await.expect("send startup");
        let mut scram: Option<ScramSha256> = None;
        let mut auth_codes = Vec::new();
        let mut reported = Vec::new();
        loop {
            let m = self.expect_msg(30, "during login").await;
            match m.tag {
                b'E' => return Err(m),
                b'Z' => return Ok((auth_codes, reported)),
                b'K' => self.backend_pid = m.int32(),
                b'S' => {
                    let mut parts = m.body.split(|&b| b == 0).map(String::from_utf8_lossy);
                    let name = parts.next().unwrap_or_default().into_owned();
                    reported.push((name, parts.next().unwrap_or_default().into_owned()));
                }
                b'R' => {
                    let code = m.int32().expect("auth code");
                    auth_codes.push(code);
                    let mut out = BytesMut::new();
                    match code {
                        0 => continue,
                        3 => frontend::password_message(password.as_bytes(), &mut out)
                            .expect("encode password"),
                        10 => {
                            let mechs = String::from_utf8_lossy(&m.body[4..]).into_owned();
                            assert!(
                                mechs.split('\0').any(|x| x == "SCRAM-SHA-256"),
                                "proxy offered SASL mechanisms {mechs:?} without SCRAM-SHA-256"
                            );
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .expect("encode SASLInitialResponse");
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("SASLContinue before SASL");
                            s.update(&m.body[4..]).expect("server-first-message");
                            frontend::sasl_response(s.message(), &mut out)
                                .expect("encode SASLResponse");
                        }
                        12 => {
                            let s = scram.as_mut().expect("SASLFinal before SASL");
                            s.finish(&m.body[4..])
                                .expect("server signature verifies (proxy knows the password)");
                            continue;
                        }
                        other => panic!("unsupported authentication request {other}"),
                    }
                    self.send(&out).await.expect("send auth response");
                }
                // ParameterStatus, BackendKeyData, NoticeResponse: not needed here.
                _ => continue,
            }
        }
    }

    /// Sends a simple Query and collects messages through ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).expect("encode query");
        self.exchange(&out, sql).await
    }

    /// Sends `bytes` (ending in a Query or Sync) and collects messages through ReadyForQuery.
    pub async fn exchange(&mut self, bytes: &[u8], what: &str) -> Vec<Msg> {
        self.send(bytes).await.expect("send");
        let mut msgs = Vec::new();
        loop {
            let m = self.expect_msg(30, what).await;
            let done = m.tag == b'Z';
            msgs.push(m);
            if done {
                return msgs;
            }
        }
    }

    /// Waits up to `secs` for the proxy to close the connection, collecting what it sent.
    pub async fn wait_closed(&mut self, secs: u64) -> Ending {
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.read_msg()).await {
                Ok(Ok(Some(m))) => messages.push(m),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    return Ending {
                        messages,
                        closed: true,
                    }
                }
                Err(_) => {
                    return Ending {
                        messages,
                        closed: false,
                    }
                }
            }
        }
    }
}

/// The transaction status byte of the last ReadyForQuery in `msgs` (`I`, `T` or `E`).
pub fn ready_status(msgs: &[Msg]) -> Option<u8> {
    msgs.iter()
        .rev()
        .find(|m| m.tag == b'Z')
        .and_then(|m| m.body.first().copied())
}
