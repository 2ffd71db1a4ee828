//! The RX thread: UDP (GRO) -> decrypt in place -> replay window -> cryptokey check -> TUN (GRO), one
//! batch at a time. It owns every session's receiving half, so the replay windows need no lock; the
//! control loop adds and removes them through a channel drained before each batch.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver as UpdateReceiver;

use meshd_crypto::session::Receiver;
use meshd_packet::IpPacket;
use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, TYPE_RELAY};
use quinn_udp::RecvMeta;
use tokio::sync::mpsc;

use super::control::ControlMsg;
use super::os_error::{self, EXHAUSTED_PAUSE};
use super::shared::{PeerShared, Routes, Shared, Stamp};
use crate::sys::clock;
use crate::sys::tun::{Tun, WriteBatch};
use crate::sys::udp::{RECV_BATCH, RECV_BUF, Udp};
use meshd_core::datapath::{
    Inbound, RelayFrame, classify, open_failed, receive_relay_frame, roam, strip_token,
};
use meshd_core::node::{DropReason, Endpoint};

/// A change to the set of receiving sessions.
#[derive(Debug)]
pub enum RxUpdate {
    Add {
        peer: Arc<PeerShared>,
        receiver: Box<Receiver>,
        confirms: bool,
    },
    Remove {
        local_index: u32,
    },
}

/// A meshd message from the network (a sealed envelope), as the RX thread hands it to whoever runs
/// the mesh above this crate (the daemon's mesh task).
#[derive(Debug)]
pub struct MeshInput {
    pub from: SocketAddr,
    pub datagram: Vec<u8>,
}

struct Session {
    peer: Arc<PeerShared>,
    receiver: Box<Receiver>,
    /// A responder's unconfirmed session: tell the control loop when the first data decrypts.
    confirms: bool,
}

/// What the RX thread needs besides its sessions, for one batch.
struct Batch<'a> {
    tun: &'a Tun,
    shared: &'a Shared,
    control: &'a mpsc::Sender<ControlMsg>,
    mesh: Option<&'a mpsc::Sender<MeshInput>>,
    udp: &'a Udp,
    routes: &'a Routes,
    own_key: Option<[u8; 32]>,
    now: std::time::Instant,
    stamp: Stamp,
}

pub fn run(
    tun: Arc<Tun>,
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlMsg>,
    mesh: Option<mpsc::Sender<MeshInput>>,
    updates: UpdateReceiver<RxUpdate>,
) -> io::Result<()> {
    let mut sessions: HashMap<u32, Session> = HashMap::new();
    let mut storage = vec![0u8; RECV_BUF * RECV_BATCH];
    let mut meta = vec![RecvMeta::default(); RECV_BATCH];
    let mut out = WriteBatch::default();

    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let udp = shared.udp.load_full();
        let n = {
            let mut bufs: [IoSliceMut<'_>; RECV_BATCH] = {
                let mut chunks = storage.chunks_mut(RECV_BUF);
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
            };
            match udp.recv(&mut bufs, &mut meta) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if os_error::is_exhausted(&e) => {
                    // Out of memory or buffers: whatever was queued waits; pause rather than spin.
                    tracing::debug!("UDP receive: {e}; pausing");
                    shared.drops.add(DropReason::ResourceExhausted, 1);
                    std::thread::sleep(EXHAUSTED_PAUSE);
                    continue;
                }
                Err(e) => {
                    // ICMP errors surface here as ECONNREFUSED and the like; the socket stays usable.
                    tracing::debug!("UDP receive: {e}");
                    continue;
                }
            }
        };
        // After the wait, not before: a session installed while this thread sat in recv must be known
        // before the datagrams that use it (the control loop installs it before sending the handshake
        // message that lets the peer use it, so draining here always sees it in time).
        apply_updates(&updates, &mut sessions);
        let now = clock::now();
        let routes = shared.routes.load();
        let own_key = shared.own_key.load().as_deref().copied();
        let batch = Batch {
            tun: &tun,
            shared: &shared,
            control: &control,
            mesh: mesh.as_ref(),
            udp: &udp,
            routes: &routes,
            own_key,
            now,
            stamp: shared.stamp(now),
        };

        for (buf, m) in storage.chunks_mut(RECV_BUF).zip(&meta).take(n) {
            let stride = m.stride.max(1);
            for datagram in buf[..m.len].chunks_mut(stride) {
                match datagram.first().copied() {
                    Some(TYPE_RELAY) => batch.relay_frame(&mut sessions, &mut out, m.addr, datagram)?,
                    _ => batch.datagram(&mut sessions, &mut out, Endpoint::Direct(m.addr), datagram)?,
                }
            }
        }
        flush(&tun, &shared, &mut out)?;
    }
}

impl Batch<'_> {
    /// One datagram that came `via` a path: WireGuard data is opened and written to the TUN device,
    /// handshake messages go to the control loop, sealed envelopes to the mesh task.
    fn datagram(
        &self,
        sessions: &mut HashMap<u32, Session>,
        out: &mut WriteBatch,
        via: Endpoint,
        datagram: &mut [u8],
    ) -> io::Result<()> {
        let shared = self.shared;
        let index = match classify(datagram, via) {
            Inbound::Data { index } => index,
            Inbound::Handshake => {
                handshake(shared, self.control, via, datagram);
                return Ok(());
            }
            Inbound::Sealed { from } => {
                self.sealed(from, datagram);
                return Ok(());
            }
            Inbound::Drop(reason) => {
                shared.drops.add(reason, 1);
                return Ok(());
            }
        };
        let Some(session) = sessions.get_mut(&index) else {
            shared.drops.add(DropReason::UnknownIndex, 1);
            return Ok(());
        };
        let plain = match session.receiver.decapsulate(self.now, datagram) {
            Ok(d) => d.plaintext,
            Err(e) => {
                shared.drops.add(open_failed(e), 1);
                return Ok(());
            }
        };
        let peer = &session.peer;
        peer.rx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
        peer.note_authenticated_received(self.stamp);
        follow(peer, via);
        if session.confirms {
            session.confirms = false;
            let msg = ControlMsg::Confirmed {
                peer: peer.id,
                local_index: index,
            };
            if self.control.try_send(msg).is_err() {
                // Lost: the next packet on this session tries again.
                session.confirms = true;
            }
        }
        if session.receiver.needs_rekey(self.now) {
            peer.note_rekey_wanted(self.stamp);
        }
        if plain.is_empty() {
            return Ok(()); // a keepalive
        }
        peer.note_data_received(self.stamp);
        let packet = &datagram[plain];
        let Ok(ip) = IpPacket::parse(packet) else {
            shared.drops.add(DropReason::InnerNotIp, 1);
            return Ok(());
        };
        // Cryptokey routing: the source must be one the sending peer is allowed to use.
        if self.routes.allowed_ips.lookup(ip.source()) != Some(peer.id) {
            shared.drops.add(DropReason::SourceNotAllowed, 1);
            return Ok(());
        }
        let total = ip.total_len();
        out.push(&packet[..total]);
        if out.is_full() {
            flush(self.tun, shared, out)?;
        }
        Ok(())
    }

    /// A relay frame from `from`: for this node, its inner datagram is handled as arriving through the
    /// relay at `from`; for another, it is forwarded if the relay table allows, unchanged.
    fn relay_frame(
        &self,
        sessions: &mut HashMap<u32, Session>,
        out: &mut WriteBatch,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> io::Result<()> {
        let relay = self.shared.relay.load();
        match receive_relay_frame(datagram, from, self.own_key.as_ref(), &relay) {
            RelayFrame::ForThisNode { via } => {
                let inner = &mut datagram[RELAY_HEADER_LEN..];
                return self.datagram(sessions, out, via, inner);
            }
            RelayFrame::Forward { to } => {
                strip_token(datagram);
                if let Err(e) = self.udp.send(to, datagram, None) {
                    let reason = if os_error::is_exhausted(&e) {
                        DropReason::ResourceExhausted
                    } else {
                        DropReason::SendFailed
                    };
                    self.shared.drops.add(reason, 1);
                }
            }
            RelayFrame::Drop(reason) => self.shared.drops.add(reason, 1),
        }
        Ok(())
    }

    /// A sealed envelope that came directly: the mesh task's, if this daemon runs one.
    fn sealed(&self, from: SocketAddr, datagram: &[u8]) {
        let Some(mesh) = self.mesh else {
            self.shared.drops.add(DropReason::ControlUnexpected, 1);
            return;
        };
        let input = MeshInput {
            from,
            datagram: datagram.to_vec(),
        };
        if mesh.try_send(input).is_err() {
            self.shared.drops.add(DropReason::ControlUnexpected, 1);
        }
    }
}

fn apply_updates(updates: &UpdateReceiver<RxUpdate>, sessions: &mut HashMap<u32, Session>) {
    for update in updates.try_iter() {
        match update {
            RxUpdate::Add {
                peer,
                receiver,
                confirms,
            } => {
                sessions.insert(
                    receiver.local_index(),
                    Session {
                        peer,
                        receiver,
                        confirms,
                    },
                );
            }
            RxUpdate::Remove { local_index } => {
                sessions.remove(&local_index);
            }
        }
    }
}

fn flush(tun: &Tun, shared: &Shared, out: &mut WriteBatch) -> io::Result<()> {
    let n = out.len() as u64;
    match tun.send(out) {
        Ok(()) => Ok(()),
        Err(e) if super::os_error::is_gone(&e) => Err(e),
        Err(e) if os_error::is_exhausted(&e) => {
            tracing::debug!("TUN write: {e}; pausing");
            shared.drops.add(DropReason::ResourceExhausted, n.max(1));
            std::thread::sleep(EXHAUSTED_PAUSE);
            Ok(())
        }
        Err(e) => {
            // EIO while the interface is down, for instance: the packets are lost, the device is fine.
            tracing::debug!("TUN write: {e}");
            shared.drops.add(DropReason::TunWriteFailed, n.max(1));
            Ok(())
        }
    }
}

/// The peer's path follows its latest authenticated packet, by the shared rule ([`roam`]); stored
/// only when it moves, so a steady flow costs a load per packet.
fn follow(peer: &PeerShared, via: Endpoint) {
    let current = peer.endpoint.load().as_deref().copied();
    let next = roam(current, via);
    if next != current {
        peer.endpoint.store(next.map(Arc::new));
    }
}

fn handshake(shared: &Shared, control: &mpsc::Sender<ControlMsg>, from: Endpoint, datagram: &[u8]) {
    let msg = ControlMsg::Handshake {
        from,
        datagram: datagram.to_vec(),
    };
    if control.try_send(msg).is_err() {
        shared.drops.add(DropReason::HandshakeQueueFull, 1);
    }
}
