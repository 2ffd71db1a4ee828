//! The configuration socket `/var/run/wireguard/IFNAME.sock` that `wg(8)` talks to.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::control::UapiCall;
use meshd_core::uapi::{RequestParser, errno_answer};

/// Where wg(8) looks for userspace interfaces.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Longest line a client may send; the longest real one (a key) is under 80 bytes.
const MAX_LINE: u64 = 4096;

/// Clients served at once. wg(8) opens one connection per command; more than this are closed at once,
/// so idle clients cannot take every descriptor the daemon has.
pub const MAX_CLIENTS: usize = 16;

/// How long a client may keep a connection without sending a line.
const IDLE: Duration = Duration::from_secs(10);

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
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(handle(stream, calls.clone(), permit));
                }
                Err(_) => {
                    tracing::debug!("configuration socket: {MAX_CLIENTS} clients already; closing one more")
                }
            },
            Err(e) => {
                // EMFILE and the like: the connection waits in the backlog until a descriptor is free.
                tracing::debug!("configuration socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, calls: mpsc::Sender<UapiCall>, _slot: OwnedSemaphorePermit) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut parser = RequestParser::new();
    let mut line = String::new();
    loop {
        line.clear();
        match tokio::time::timeout(IDLE, (&mut reader).take(MAX_LINE).read_line(&mut line)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let Some(text) = line.strip_suffix('\n') else {
            // Over-long line, or the client closed mid-line.
            let _ = write
                .write_all(errno_answer(meshd_core::uapi::EINVAL).as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Idle clients beyond [`MAX_CLIENTS`] are closed at once, and the ones held do not stop a new
    /// client from being served once one leaves.
    #[test]
    fn idle_clients_are_capped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = std::env::temp_dir().join(format!("meshd-uapi-cap-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let path = dir.join("t0.sock");
            let listener = bind(&path).unwrap();
            let (calls, mut requests) = mpsc::channel::<UapiCall>(4);
            tokio::spawn(serve(listener, calls));
            tokio::spawn(async move {
                while let Some(call) = requests.recv().await {
                    let _ = call
                        .reply
                        .send(zeroize::Zeroizing::new("errno=0\n\n".to_string()));
                }
            });
            let mut idle = Vec::new();
            for _ in 0..MAX_CLIENTS {
                idle.push(UnixStream::connect(&path).await.unwrap());
            }
            // Let the server take them all.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut extra = UnixStream::connect(&path).await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
                .await
                .expect("one client too many is closed, not left waiting")
                .unwrap_or(0);
            assert_eq!(n, 0, "closed without an answer");
            drop(idle.pop());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut client = UnixStream::connect(&path).await.unwrap();
            client.write_all(b"get=1\n\n").await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf))
                .await
                .expect("served once a slot is free")
                .unwrap();
            assert_eq!(&buf[..n], b"errno=0\n\n");
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
