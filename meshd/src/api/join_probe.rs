//! Noticing at once that nothing listens at a join's controller address.
//!
//! The join itself goes out on the data plane's socket, which is not connected and so never hears
//! ICMP errors: sent to a closed port, it waits for its whole timeout. Beside it, the API sends empty
//! UDP datagrams from a socket connected to the controller's address; a connected socket gets the
//! kernel's report of an ICMP "port unreachable" (or "host/network unreachable") as an error on its
//! next call. A meshd controller counts such an empty datagram as malformed and answers nothing. The
//! first goes out [`PROBE_DELAY`] after the join, so a join answered at once sends none.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::node::{JoinFailure, JoinFailureKind};

/// How long the join runs before the first empty datagram: a controller that answers at once (on a
/// LAN, say) never sees one.
pub const PROBE_DELAY: Duration = Duration::from_millis(250);
/// How often an empty datagram goes out while the join waits.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// At most this many go out for one join (the join gives up within about 10 s).
pub const MAX_PROBES: u32 = 30;

/// Resolves with the error when `controller` answers UDP with an ICMP error that says nothing listens
/// there; otherwise never (the caller races it against the join).
pub async fn unreachable(controller: SocketAddr) -> io::Error {
    if let Some(e) = probe(controller).await {
        return e;
    }
    std::future::pending().await
}

async fn probe(controller: SocketAddr) -> Option<io::Error> {
    tokio::time::sleep(PROBE_DELAY).await;
    let local: SocketAddr = if controller.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    if let Err(e) = socket.connect(controller).await {
        return definite(e);
    }
    let mut buf = [0u8; 16];
    for _ in 0..MAX_PROBES {
        if let Err(e) = socket.send(&[]).await
            && let Some(e) = definite(e)
        {
            return Some(e);
        }
        if let Ok(Err(e)) = tokio::time::timeout(PROBE_EVERY, socket.recv(&mut buf)).await
            && let Some(e) = definite(e)
        {
            return Some(e);
        }
    }
    None
}

/// The errors that mean the address cannot take a join, as opposed to a passing failure.
fn definite(e: io::Error) -> Option<io::Error> {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable
    )
    .then_some(e)
}

/// The join's failure for `error` from [`unreachable()`].
pub fn failure(controller: SocketAddr, error: &io::Error) -> JoinFailure {
    let message = if error.kind() == io::ErrorKind::ConnectionRefused {
        format!(
            "nothing listens on UDP port {} at {} (it answered \"port unreachable\"); check the \
             port: it is the controller's listen_port, 51820 unless its configuration says otherwise",
            controller.port(),
            controller.ip()
        )
    } else {
        format!(
            "cannot reach the controller at {controller}: {error}; check the address and this \
             machine's routes"
        )
    };
    JoinFailure {
        kind: JoinFailureKind::Unreachable,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_noticed_within_a_probe() {
        // A port that was just free: bind, note it, close.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let e = tokio::time::timeout(Duration::from_secs(2), unreachable(closed))
            .await
            .expect("a closed port on loopback answers port unreachable at once");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let message = failure(closed, &e).message;
        assert!(
            message.contains(&port.to_string()) && message.contains("port unreachable"),
            "{message}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_listening_port_is_not_called_closed() {
        let open = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = open.local_addr().unwrap();
        let waited = tokio::time::timeout(PROBE_EVERY * 3, unreachable(addr)).await;
        assert!(waited.is_err(), "a listening port was reported unreachable");
    }
}
