//! SCRAM-SHA-256 login of a client against the configured users.

use bytes::{Bytes, BytesMut};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{read_frame, FrontendError};
use crate::config::User;
use crate::scram::{ScramError, ServerExchange, Verifier};
use crate::wire;

/// Runs the SASL exchange. `user` is `None` for an unknown login name: the exchange still runs
/// against `decoy` so that unknown users and wrong passwords look the same.
pub async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    user: Option<&User>,
    decoy: &Verifier,
) -> Result<(), FrontendError> {
    let mut out = BytesMut::new();
    wire::put(
        &mut out,
        &Authentication::SASL(vec!["SCRAM-SHA-256".into()]),
    );
    stream.write_all(&out).await?;

    let first = password_message(stream, buf).await?;
    let init = first
        .into_sasl_initial_response()
        .map_err(|_| ScramError::Malformed)?;
    if init.auth_method != "SCRAM-SHA-256" {
        return Err(ScramError::Malformed.into());
    }
    let client_first = init.data.map(|d| utf8(&d)).transpose()?.unwrap_or_default();
    let verifier = user.map_or(decoy, |u| &u.verifier).clone();
    let (exchange, server_first) = ServerExchange::start(verifier, &client_first)?;
    out.clear();
    wire::put(
        &mut out,
        &Authentication::SASLContinue(Bytes::from(server_first.into_bytes())),
    );
    stream.write_all(&out).await?;

    let resp = password_message(stream, buf)
        .await?
        .into_sasl_response()
        .map_err(|_| ScramError::Malformed)?;
    let server_final = exchange.finish(&utf8(&resp.data)?)?;
    if user.is_none() {
        return Err(ScramError::Proof.into());
    }
    out.clear();
    wire::put(
        &mut out,
        &Authentication::SASLFinal(Bytes::from(server_final.into_bytes())),
    );
    wire::put(&mut out, &Authentication::Ok);
    stream.write_all(&out).await?;
    Ok(())
}

fn utf8(b: &[u8]) -> Result<String, ScramError> {
    String::from_utf8(b.to_vec()).map_err(|_| ScramError::Malformed)
}

async fn password_message<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<PasswordMessageFamily, FrontendError> {
    let frame = read_frame(stream, buf).await?;
    if frame[0] != b'p' {
        return Err(FrontendError::Wire(wire::WireError::UnexpectedType(
            frame[0] as char,
        )));
    }
    Ok(wire::decode(frame, "password message")?)
}
