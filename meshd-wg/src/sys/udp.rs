//! The UDP socket that carries WireGuard datagrams, with segmentation (GSO) on send and coalescing (GRO)
//! on receive through quinn-udp.
//!
//! One dual-stack IPv6 socket serves both families where the host has IPv6, so the receive thread waits
//! on a single file descriptor; addresses come back canonical (IPv4 as IPv4, never v4-mapped).

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use meshd_core::address::canonical;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams one receive call can return (quinn-udp's recvmmsg batch).
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Size of one receive buffer: a whole GRO aggregate.
pub const RECV_BUF: usize = 65536;

/// Socket buffers: large enough to absorb a few GSO batches while the other side catches up
/// (wireguard-go and Firezone raised theirs for the same reason). The kernel caps them at
/// `net.core.{r,w}mem_max` unless the `FORCE` variants are allowed (root).
const SOCKET_BUFFER: usize = 7 << 20;

/// How long a send waits for room in a full socket buffer before the datagrams count as dropped.
const SEND_WAIT: Duration = Duration::from_millis(100);

/// How long a blocked receive waits before returning, so the receive thread notices a socket replaced
/// by a new listen port or a shutdown.
const RECV_TIMEOUT: Duration = Duration::from_millis(250);

pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    port: u16,
    dual_stack: bool,
    /// The `SO_MARK` of the socket, which [`Udp::path_mtu`]'s route lookup must use too.
    mark: AtomicU32,
}

impl Udp {
    /// Binds `port` (0: any free port) on all addresses, IPv6 and IPv4 together where possible.
    pub fn bind(port: u16) -> io::Result<Udp> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(socket) => (socket, true),
            // A host without IPv6 (disabled by sysctl or boot flag) still gets an IPv4 tunnel.
            Err(_) => {
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
                (socket, false)
            }
        };
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        force_buffer_sizes(&socket);
        let socket: UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // The socket stays non-blocking (quinn-udp sets it so): a blocking recvmmsg would wait for a
        // whole batch of datagrams. Receivers and senders wait in poll(2) instead.
        let port = socket.local_addr()?.port();
        Ok(Udp {
            socket,
            state,
            port,
            dual_stack,
            mark: AtomicU32::new(0),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Marks every datagram sent (`SO_MARK`), so policy routing can keep the tunnel's own traffic out of
    /// the tunnel. 0 clears the mark.
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        socket2::SockRef::from(&self.socket).set_mark(mark)?;
        self.mark.store(mark, Ordering::Relaxed);
        Ok(())
    }

    /// The MTU of the kernel's route to `to` (the outgoing device's, or a smaller path MTU it learned),
    /// read from a socket connected there with this socket's mark (`IP_MTU`, `IPV6_MTU`). It opens a
    /// descriptor: for after a send failed with `EMSGSIZE`, not per packet.
    pub fn path_mtu(&self, to: SocketAddr) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let to = canonical(to);
        let (domain, level, option) = match to {
            SocketAddr::V4(_) => (Domain::IPV4, libc::IPPROTO_IP, libc::IP_MTU),
            SocketAddr::V6(_) => (Domain::IPV6, libc::IPPROTO_IPV6, libc::IPV6_MTU),
        };
        let probe = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        let mark = self.mark.load(Ordering::Relaxed);
        if mark != 0 {
            probe.set_mark(mark)?;
        }
        probe.connect(&to.into())?;
        let mut mtu: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the fd is a live socket owned by `probe`; `mtu` and `len` are valid for writes of
        // the sizes passed, and the kernel writes at most `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                probe.as_raw_fd(),
                level,
                option,
                (&mut mtu as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        usize::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("MTU {mtu}")))
    }

    /// Most segments one GSO send may carry (1 when the kernel has no UDP GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents` to `to`: one datagram, or with `segment_size` a run of datagrams of that size
    /// (the last may be shorter) in one system call.
    pub fn send(&self, to: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> io::Result<()> {
        let destination = self.outgoing(to);
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            match self.state.try_send(UdpSockRef::from(&self.socket), &transmit) {
                // The send buffer is full: wait for room rather than drop, so a fast TUN reader is
                // paced by the network instead of losing packets.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(libc::POLLOUT, SEND_WAIT)? {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits for datagrams and receives what is queued into `bufs`; entry `i` of `meta` says how many
    /// bytes landed in `bufs[i]` and at which stride they split into datagrams. Returns the number of
    /// buffers filled; `TimedOut` when nothing came within the receive timeout.
    pub fn recv(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        if !self.wait(libc::POLLIN, RECV_TIMEOUT)? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = self.state.recv(UdpSockRef::from(&self.socket), bufs, meta)?;
        for m in &mut meta[..n] {
            m.addr = canonical(m.addr);
        }
        Ok(n)
    }

    /// Waits until the socket is ready for `events`, at most `timeout`; false on timeout.
    fn wait(&self, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
        Ok(super::poll::wait(&self.socket, events, timeout.as_millis() as libc::c_int)?.is_some())
    }

    fn outgoing(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        }
    }
}

impl std::fmt::Debug for Udp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udp")
            .field("port", &self.port())
            .finish_non_exhaustive()
    }
}

fn bind_dual_stack(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket)
}

/// As root, lifts the buffers past `net.core.*mem_max` (`SO_SNDBUFFORCE`/`SO_RCVBUFFORCE`); a failure
/// only means the kernel's cap applies.
fn force_buffer_sizes(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let size = SOCKET_BUFFER as libc::c_int;
    for option in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
        // SAFETY: the fd is a live socket owned by `socket`, and the option value is a c_int whose
        // address and size are passed correctly.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_mtu_is_the_routes() {
        let udp = Udp::bind(0).unwrap();
        // Loopback's MTU is 65536 on Linux; what matters is that the route's figure comes back.
        let mtu = udp.path_mtu((Ipv4Addr::LOCALHOST, 9).into()).unwrap();
        assert!(mtu >= 1280, "{mtu}");
    }

    #[test]
    fn loopback_round_trip_with_segments() {
        let a = Udp::bind(0).unwrap();
        let b = Udp::bind(0).unwrap();
        let to: SocketAddr = (Ipv4Addr::LOCALHOST, b.port()).into();
        // Three datagrams of 100 bytes and one of 40, in one call when GSO is there.
        let mut contents = Vec::new();
        for i in 0..3u8 {
            contents.extend_from_slice(&[i; 100]);
        }
        contents.extend_from_slice(&[9; 40]);
        a.send(to, &contents, Some(100)).unwrap();

        let mut storage = vec![0u8; RECV_BUF * RECV_BATCH];
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(RECV_BUF).map(IoSliceMut::new).collect();
        let mut meta = vec![RecvMeta::default(); RECV_BATCH];
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = b.recv(&mut bufs, &mut meta).unwrap();
            for (buf, m) in bufs.iter().zip(&meta).take(n) {
                assert_eq!(m.addr, SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())));
                for datagram in buf[..m.len].chunks(m.stride) {
                    got.push(datagram.to_vec());
                }
            }
        }
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 100, 40]
        );
        assert_eq!(got[3], vec![9; 40]);
    }
}
