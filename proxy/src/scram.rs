//! SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL uses it: verifiers, the server side of the
//! exchange (clients logging in to Orgwall) and the client side (Orgwall logging in upstream).
//!
//! Pure computation, no I/O: callers move the messages. Channel binding is not offered
//! (`SCRAM-SHA-256-PLUS` is never advertised), so the gs2 header must be `n,,` or `y,,`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::errors::{code, UserFacing};

const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random printable nonce.
pub fn nonce() -> String {
    let mut raw = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut raw);
    B64.encode(raw)
}

/// A stored SCRAM-SHA-256 verifier, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// Derives a verifier from a clear-text password with a fresh random salt.
    pub fn from_password(password: &str) -> Verifier {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::derive(password, salt, ITERATIONS)
    }

    fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let sp = salted_password(password, &salt, iterations);
        let client_key = hmac(&sp, b"Client Key");
        Verifier {
            iterations,
            salt,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&sp, b"Server Key"),
        }
    }

    /// Parses `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Result<Verifier, String> {
        let bad = || "not a SCRAM-SHA-256$iter:salt$stored:server verifier".to_string();
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iter, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let key = |k: &str| -> Result<[u8; 32], String> {
            B64.decode(k)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)
        };
        Ok(Verifier {
            iterations: iter.parse().map_err(|_| bad())?,
            salt: B64.decode(salt).map_err(|_| bad())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// True when `password` produces this verifier.
    pub fn check_password(&self, password: &str) -> bool {
        let other = Self::derive(password, self.salt.clone(), self.iterations);
        ct_eq(&other.stored_key, &self.stored_key)
    }
}

/// Why an exchange failed; all of these end as `28P01` for the client.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("nonce mismatch")]
    Nonce,
    #[error("wrong password")]
    Proof,
    #[error("server signature did not verify")]
    ServerSignature,
}

impl UserFacing for ScramError {
    fn sqlstate(&self) -> &'static str {
        code::INVALID_PASSWORD
    }
    fn fatal(&self) -> bool {
        true
    }
    /// Never which part failed: it would help a password guesser.
    fn client_message(&self) -> String {
        "password authentication failed".into()
    }
}

fn attr(msg: &str, key: char) -> Result<&str, ScramError> {
    msg.split(',')
        .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .ok_or(ScramError::Malformed)
}

/// Server side after the client-first message.
pub struct ServerExchange {
    verifier: Verifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Takes the client-first message; returns the state and the server-first message.
    pub fn start(verifier: Verifier, client_first: &str) -> Result<(Self, String), ScramError> {
        let (gs2, bare) = match client_first.split_once(",,") {
            Some((g, b)) if g == "n" || g == "y" => (g, b),
            Some((g, _)) if g.starts_with('p') => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        };
        let _ = gs2;
        let client_nonce = attr(bare, 'r')?;
        let nonce = format!("{client_nonce}{}", self::nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let st = ServerExchange {
            verifier,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((st, server_first))
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed)?;
        if attr(without_proof, 'r')? != self.nonce {
            return Err(ScramError::Nonce);
        }
        let cbind = attr(without_proof, 'c')?;
        if cbind != "biws" && cbind != "eSws" {
            return Err(ScramError::ChannelBinding);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != 32 {
            return Err(ScramError::Proof);
        }
        let auth = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let sig = hmac(&self.verifier.stored_key, auth.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(sig).map(|(p, s)| p ^ s).collect();
        if !ct_eq(&Sha256::digest(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::Proof);
        }
        let server_sig = hmac(&self.verifier.server_key, auth.as_bytes());
        Ok(format!("v={}", B64.encode(server_sig)))
    }
}

/// Client side of the exchange (Orgwall logging in to PostgreSQL).
pub struct ClientExchange {
    password: String,
    client_first_bare: String,
    nonce: String,
    server_key: Option<[u8; 32]>,
    auth_message: String,
}

impl ClientExchange {
    /// Returns the state and the client-first message.
    pub fn start(password: &str) -> (Self, String) {
        let nonce = nonce();
        let bare = format!("n=,r={nonce}");
        let first = format!("n,,{bare}");
        let st = ClientExchange {
            password: password.to_string(),
            client_first_bare: bare,
            nonce,
            server_key: None,
            auth_message: String::new(),
        };
        (st, first)
    }

    /// Takes the server-first message; returns the client-final message.
    pub fn respond(&mut self, server_first: &str) -> Result<String, ScramError> {
        let nonce = attr(server_first, 'r')?;
        if !nonce.starts_with(&self.nonce) {
            return Err(ScramError::Nonce);
        }
        let salt = B64
            .decode(attr(server_first, 's')?)
            .map_err(|_| ScramError::Malformed)?;
        let iters: u32 = attr(server_first, 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed)?;
        let sp = salted_password(&self.password, &salt, iters);
        let client_key = hmac(&sp, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let sig = hmac(&stored, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(k, s)| k ^ s).collect();
        self.server_key = Some(hmac(&sp, b"Server Key"));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Verifies the server-final message.
    pub fn finish(&self, server_final: &str) -> Result<(), ScramError> {
        let key = self.server_key.ok_or(ScramError::Malformed)?;
        let want = hmac(&key, self.auth_message.as_bytes());
        let got = B64
            .decode(attr(server_final, 'v')?)
            .map_err(|_| ScramError::Malformed)?;
        if ct_eq(&got, &want) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

/// PostgreSQL's md5 password response: `"md5" + md5(md5(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: &[u8; 4]) -> String {
    use md5::Md5;
    let inner = format!("{:x}", Md5::digest(format!("{password}{user}").as_bytes()));
    let mut outer = Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    format!("md5{:x}", outer.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server_pw: &str, client_pw: &str) -> Result<(), ScramError> {
        let v = Verifier::from_password(server_pw);
        let (mut client, first) = ClientExchange::start(client_pw);
        let (server, server_first) = ServerExchange::start(v, &first)?;
        let client_final = client.respond(&server_first)?;
        let server_final = server.finish(&client_final)?;
        client.finish(&server_final)
    }

    #[test]
    fn round_trip_succeeds_with_the_right_password() {
        assert_eq!(run("pw", "pw"), Ok(()));
        assert_eq!(run("pw", "wrong"), Err(ScramError::Proof));
    }

    #[test]
    fn postgres_verifier_format_parses() {
        // The shape PostgreSQL stores in pg_authid.rolpassword.
        let v = Verifier::parse("SCRAM-SHA-256$4096:6EkUP2BMwvAKuPhPq0ZLWA==$jmYaQtzTd3aN8NWT9yWaxHnwnmJEGtX4VCiXXPaX7hw=:Ex4CS0YSLeLuLYsnxa8ArwiL3m1rfqoxAzdlwGaaoOA=").unwrap();
        assert_eq!(v.iterations, 4096);
        assert!(!v.check_password("not-it"));
        assert!(Verifier::parse("SCRAM-SHA-256$x").is_err());
    }

    #[test]
    fn channel_binding_and_garbage_are_refused() {
        let v = Verifier::from_password("pw");
        assert_eq!(
            ServerExchange::start(v.clone(), "p=tls-server-end-point,,n=,r=abc").err(),
            Some(ScramError::ChannelBinding)
        );
        assert_eq!(
            ServerExchange::start(v, "garbage").err(),
            Some(ScramError::Malformed)
        );
    }

    #[test]
    fn md5_matches_postgres() {
        // "md5" || md5(md5('pw' || 'bob') || salt), computed independently with Python's hashlib.
        let got = md5_password("bob", "pw", &[1, 2, 3, 4]);
        assert_eq!(got, "md5cb38f15ce1fcb6e1c15f9a188dcaaa9b");
    }
}
