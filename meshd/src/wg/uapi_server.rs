//! The configuration socket `/var/run/wireguard/IFNAME.sock` that `wg(8)` talks to.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::control::UapiCall;
use crate::uapi::{RequestParser, errno_answer};

/// Where wg(8) looks for userspace interfaces.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Longest line a client may send; the longest real one (a key) is under 80 bytes.
const MAX_LINE: u64 = 4096;

pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

/// Binds the socket, owner-only. A stale socket from a crashed run is replaced; a live one (another
/// daemon serves the interface) is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another running daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // The answer to `get=1` contains the private key: root only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, calls: mpsc::Sender<UapiCall>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, calls.clone()));
            }
            Err(e) => {
                tracing::warn!("configuration socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, calls: mpsc::Sender<UapiCall>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut parser = RequestParser::new();
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE).read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(text) = line.strip_suffix('\n') else {
            // Over-long line, or the client closed mid-line.
            let _ = write
                .write_all(errno_answer(crate::uapi::EINVAL).as_bytes())
                .await;
            return;
        };
        match parser.feed_line(text) {
            Ok(None) => {}
            Ok(Some(request)) => {
                let (reply, answer) = oneshot::channel();
                if calls.send(UapiCall { request, reply }).await.is_err() {
                    return;
                }
                let Ok(answer) = answer.await else { return };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("configuration request refused: {e}");
                let _ = write.write_all(errno_answer(e.errno()).as_bytes()).await;
                return;
            }
        }
    }
}
