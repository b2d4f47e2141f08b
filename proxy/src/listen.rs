//! Where clients connect: the TCP listener and, with `unix_socket_dir`, a Unix-domain socket
//! named as PostgreSQL names its own (`<dir>/.s.PGSQL.<port>`), accepted as one stream.
//!
//! Invariant: the socket file exists exactly while Orgwall listens on it: a stale file left by
//! a crashed run is replaced, a live one (another server answers) is an error, and dropping
//! [`Listeners`] removes the file.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::admission::AdmissionError;
use crate::config::socket_file;
use crate::errors::ClientError;
use crate::frontend::ClientStream;

/// Who connected, for the connection's span.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A local process on the Unix-domain socket.
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Unix => f.write_str("[local]"),
        }
    }
}

/// The listening sockets of one `server::run`.
pub struct Listeners {
    tcp: TcpListener,
    unix: Option<UnixSocket>,
}

struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listeners {
    /// Adds the Unix-domain socket in `unix_dir`, named after `tcp`'s port (so `psql -h <dir>
    /// -p <port>` reaches the same proxy as `-h <host> -p <port>`).
    pub fn bind(tcp: TcpListener, unix_dir: Option<&Path>) -> io::Result<Listeners> {
        let unix = match unix_dir {
            None => None,
            Some(dir) => {
                let path = socket_file(dir, tcp.local_addr()?.port());
                Some(bind_unix(path)?)
            }
        };
        Ok(Listeners { tcp, unix })
    }

    /// `127.0.0.1:6432` or `127.0.0.1:6432 and /tmp/.s.PGSQL.6432`.
    pub fn describe(&self) -> String {
        let tcp = self
            .tcp
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string());
        match &self.unix {
            None => tcp,
            Some(u) => format!("{tcp} and {}", u.path.display()),
        }
    }

    /// The next client on either socket. Cancel-safe (both accepts are).
    pub async fn accept(&self) -> io::Result<(ClientStream, Peer)> {
        let unix = async {
            match &self.unix {
                Some(u) => u.listener.accept().await.map(|(s, _)| s),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            tcp = self.tcp.accept() => {
                let (socket, peer) = tcp?;
                let _ = socket.set_nodelay(true);
                Ok((ClientStream::Plain(socket), Peer::Tcp(peer)))
            }
            unix = unix => Ok((ClientStream::Unix(unix?), Peer::Unix)),
        }
    }
}

fn bind_unix(path: PathBuf) -> io::Result<UnixSocket> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another server is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path).map_err(named)?;
    }
    let listener = UnixListener::bind(&path).map_err(named)?;
    // As PostgreSQL's default `unix_socket_permissions`: any local user may connect (and must
    // still log in).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).map_err(named)?;
    Ok(UnixSocket { listener, path })
}

/// Whether `accept` failed for want of file descriptors (the process's or the system's).
pub fn is_out_of_files(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl Listeners {
    /// Out of file descriptors: closes `spare` (a descriptor kept for this), accepts the
    /// waiting connection with it, sends it a FATAL `53300` and closes it, then takes the spare
    /// again. Without this the connection would sit in the backlog, its client waiting with no
    /// error.
    pub async fn refuse_waiting(&self, spare: &mut Option<std::fs::File>) {
        let Some(fd) = spare.take() else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            *spare = std::fs::File::open("/dev/null").ok();
            return;
        };
        drop(fd);
        let wait = std::time::Duration::from_millis(50);
        if let Ok(Ok((mut socket, _))) = tokio::time::timeout(wait, self.accept()).await {
            let frame = ClientError::from(AdmissionError::OutOfFiles).to_frame();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), async {
                use tokio::io::AsyncWriteExt;
                let _ = socket.write_all(&frame).await;
                let _ = socket.shutdown().await;
            })
            .await;
        }
        *spare = std::fs::File::open("/dev/null").ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tcp() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    #[tokio::test]
    async fn socket_file_lives_while_listening_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let l = Listeners::bind(tcp().await, Some(dir.path())).unwrap();
        let path = socket_file(dir.path(), l.tcp.local_addr().unwrap().port());
        assert!(path.exists(), "{}", l.describe());
        assert!(l.describe().ends_with(&path.display().to_string()));
        // A second server on the same path is refused while the first answers.
        let e = bind_unix(path.clone()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(l);
        assert!(!path.exists());

        // A stale socket file (nobody listening) is replaced.
        let t = tcp().await;
        let path = socket_file(dir.path(), t.local_addr().unwrap().port());
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = Listeners::bind(t, Some(dir.path())).unwrap();
        let (client, accepted) = tokio::join!(tokio::net::UnixStream::connect(&path), l.accept());
        client.unwrap();
        let (stream, peer) = accepted.unwrap();
        assert!(stream.is_local());
        assert_eq!(peer.to_string(), "[local]");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let t = tcp().await;
        let path = socket_file(dir.path(), t.local_addr().unwrap().port());
        std::fs::write(&path, b"keep me").unwrap();
        let e = Listeners::bind(t, Some(dir.path())).err().unwrap();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }
}
