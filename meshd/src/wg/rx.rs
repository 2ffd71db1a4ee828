//! The RX thread: UDP (GRO) -> decrypt in place -> replay window -> cryptokey check -> TUN (GRO), one
//! batch at a time. It owns every session's receiving half, so the replay windows need no lock; the
//! control loop adds and removes them through a channel drained before each batch.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver as UpdateReceiver;

use meshd_crypto::RecvError;
use meshd_crypto::session::Receiver;
use meshd_packet::IpPacket;
use meshd_packet::wire::{TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_INITIATION, TYPE_RESPONSE};
use quinn_udp::RecvMeta;
use tokio::sync::mpsc;

use super::control::ControlMsg;
use super::shared::{PeerShared, Shared};
use crate::node::DropReason;
use crate::sys::clock;
use crate::sys::tun::{Tun, WriteBatch};
use crate::sys::udp::{RECV_BATCH, RECV_BUF};

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

struct Session {
    peer: Arc<PeerShared>,
    receiver: Box<Receiver>,
    /// A responder's unconfirmed session: tell the control loop when the first data decrypts.
    confirms: bool,
}

pub fn run(
    tun: Arc<Tun>,
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlMsg>,
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
        let stamp = shared.stamp(now);
        let routes = shared.routes.load();

        for (buf, m) in storage.chunks_mut(RECV_BUF).zip(&meta).take(n) {
            let stride = m.stride.max(1);
            for datagram in buf[..m.len].chunks_mut(stride) {
                match datagram.first().copied() {
                    Some(TYPE_DATA) => {}
                    Some(TYPE_INITIATION | TYPE_RESPONSE | TYPE_COOKIE_REPLY) => {
                        handshake(&shared, &control, m.addr, datagram);
                        continue;
                    }
                    _ => {
                        shared.drops.add(DropReason::Malformed, 1);
                        continue;
                    }
                }
                let Some(index) = datagram
                    .get(4..8)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                else {
                    shared.drops.add(DropReason::Malformed, 1);
                    continue;
                };
                let Some(session) = sessions.get_mut(&index) else {
                    shared.drops.add(DropReason::UnknownIndex, 1);
                    continue;
                };
                let plain = match session.receiver.decapsulate(now, datagram) {
                    Ok(d) => d.plaintext,
                    Err(e) => {
                        shared.drops.add(recv_drop(e), 1);
                        continue;
                    }
                };
                let peer = &session.peer;
                peer.rx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                peer.note_authenticated_received(stamp);
                roam(peer, m.addr);
                if session.confirms {
                    session.confirms = false;
                    let msg = ControlMsg::Confirmed {
                        peer: peer.id,
                        local_index: index,
                    };
                    if control.try_send(msg).is_err() {
                        // Lost: the next packet on this session tries again.
                        session.confirms = true;
                    }
                }
                if session.receiver.needs_rekey(now) {
                    peer.note_rekey_wanted(stamp);
                }
                if plain.is_empty() {
                    continue; // a keepalive
                }
                peer.note_data_received(stamp);
                let packet = &datagram[plain];
                let Ok(ip) = IpPacket::parse(packet) else {
                    shared.drops.add(DropReason::InnerNotIp, 1);
                    continue;
                };
                // Cryptokey routing: the source must be one the sending peer is allowed to use.
                if routes.allowed_ips.lookup(ip.source()) != Some(peer.id) {
                    shared.drops.add(DropReason::SourceNotAllowed, 1);
                    continue;
                }
                let total = ip.total_len();
                out.push(&packet[..total]);
                if out.is_full() {
                    flush(&tun, &shared, &mut out)?;
                }
            }
        }
        flush(&tun, &shared, &mut out)?;
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
        Err(e) if super::tx::is_gone(&e) => Err(e),
        Err(e) => {
            // EIO while the interface is down, for instance: the packets are lost, the device is fine.
            tracing::debug!("TUN write: {e}");
            shared.drops.add(DropReason::TunWriteFailed, n.max(1));
            Ok(())
        }
    }
}

/// The peer's endpoint follows the source of its latest authenticated packet (roaming).
fn roam(peer: &PeerShared, from: SocketAddr) {
    if peer.endpoint.load().as_deref() != Some(&from) {
        peer.endpoint.store(Some(Arc::new(from)));
    }
}

fn handshake(shared: &Shared, control: &mpsc::Sender<ControlMsg>, from: SocketAddr, datagram: &[u8]) {
    let msg = ControlMsg::Handshake {
        from,
        datagram: datagram.to_vec(),
    };
    if control.try_send(msg).is_err() {
        shared.drops.add(DropReason::HandshakeQueueFull, 1);
    }
}

fn recv_drop(e: RecvError) -> DropReason {
    match e {
        RecvError::Malformed(_) => DropReason::Malformed,
        RecvError::WrongIndex => DropReason::UnknownIndex,
        RecvError::Expired => DropReason::SessionExpired,
        RecvError::Replayed => DropReason::Replayed,
        RecvError::Decrypt => DropReason::DecryptFailed,
    }
}
