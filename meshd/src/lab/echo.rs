//! A UDP echo between two namespaces, inside this one process: the server's socket is created by a
//! thread that entered one namespace, the client's by a thread that entered the other (a socket
//! stays in the namespace it was created in). The server answers each datagram with the address it
//! came from, so both ends learn what the network did to the source address.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use meshd_wg::sys::clock;
use meshd_wg::sys::netns;

/// How often the client sends while it has no answer.
const RESEND: Duration = Duration::from_millis(400);

/// What one exchange showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The source addresses the server saw.
    pub seen_by_server: Vec<SocketAddr>,
    /// The address the server reported back, if an answer reached the client.
    pub answered: Option<SocketAddr>,
    /// Why the client could not send, if it could not (e.g. "Network is unreachable").
    pub send_error: Option<String>,
}

/// Serves on `server_addr` (port chosen by the kernel) in `server_ns` and sends from `client_addr`
/// (any port) in `client_ns` until an answer comes or `timeout` passes.
pub fn exchange(
    client_ns: &str,
    client_addr: IpAddr,
    server_ns: &str,
    server_addr: IpAddr,
    timeout: Duration,
) -> io::Result<Echo> {
    let server = netns::run_in(server_ns, || UdpSocket::bind((server_addr, 0)))?
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {server_addr} in {server_ns}: {e}")))?;
    let client = netns::run_in(client_ns, || UdpSocket::bind((client_addr, 0)))?
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {client_addr} in {client_ns}: {e}")))?;
    let target = server.local_addr()?;
    let poll = Some(Duration::from_millis(100));
    server.set_read_timeout(poll)?;
    client.set_read_timeout(poll)?;
    let deadline = clock::now() + timeout;

    thread::scope(|s| {
        let serving = s.spawn(|| serve(&server, deadline));
        let mut echo = Echo {
            seen_by_server: Vec::new(),
            answered: None,
            send_error: None,
        };
        let mut next_send = clock::now();
        let mut buf = [0u8; 512];
        while clock::now() < deadline && echo.answered.is_none() {
            if clock::now() >= next_send {
                next_send = clock::now() + RESEND;
                if let Err(e) = client.send_to(b"meshd lab echo", target) {
                    echo.send_error = Some(e.to_string());
                    break;
                }
            }
            if let Ok((len, from)) = client.recv_from(&mut buf)
                && from == target
            {
                echo.answered = std::str::from_utf8(&buf[..len]).ok().and_then(|t| t.parse().ok());
            }
        }
        // The server stops at the deadline; tell it to stop now, from the loopback of its own socket.
        let _ = server.send_to(b"", target);
        echo.seen_by_server = serving.join().unwrap_or_default();
        echo.seen_by_server.retain(|a| *a != target);
        Ok(echo)
    })
}

/// Answers each datagram with its source address until the deadline or an empty datagram from
/// itself. Returns the sources seen.
fn serve(socket: &UdpSocket, deadline: std::time::Instant) -> Vec<SocketAddr> {
    let own = socket.local_addr().ok();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while clock::now() < deadline {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if Some(from) == own && len == 0 {
            break;
        }
        if !seen.contains(&from) {
            seen.push(from);
        }
        let _ = socket.send_to(from.to_string().as_bytes(), from);
    }
    seen
}
