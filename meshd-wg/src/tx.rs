//! The TX thread: TUN -> route -> encrypt in place -> UDP, one batch at a time, no lock and no
//! allocation per packet.
//!
//! A batch is what one poll wakeup finds on the TUN device (up to [`BATCH`] segments, typically one TSO
//! super-packet). Each segment is sealed where it lies, then moved down so the datagrams sit back to
//! back; consecutive datagrams to the same endpoint with the same length go out in one UDP GSO call.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meshd_crypto::SendError;
use meshd_packet::HEADROOM;
use meshd_packet::wire::DATA_OVERHEAD;
use meshd_packet::wire::meshd::write_relay_frame;
use tokio::sync::mpsc;

use super::control::ControlMsg;
use super::os_error::{EXHAUSTED_PAUSE, OsErrorKind, classify};
use super::shared::{PeerShared, Shared};
use super::too_big::{self, Answerer};
use crate::sys::clock;
use crate::sys::tun::{BATCH, ReadBatch, Tun};
use crate::sys::udp::Udp;
use meshd_core::node::{DropReason, Endpoint};

/// UDP payload bytes one GSO send may carry (the IP length field's limit, less the headers).
const MAX_GSO_BYTES: usize = 65_000;

/// How often the thread re-reads the MTU (`ip link set mtu` changes it under us).
const MTU_CHECK: Duration = Duration::from_secs(1);

/// A run of datagrams for one GSO send: `count` datagrams of `segment` bytes from `start`, the last
/// possibly shorter (then `closed`).
struct Run {
    peer: Arc<PeerShared>,
    to: SocketAddr,
    start: usize,
    end: usize,
    segment: usize,
    count: usize,
    closed: bool,
}

pub fn run(tun: Arc<Tun>, shared: Arc<Shared>, control: mpsc::Sender<ControlMsg>) -> io::Result<()> {
    let mut mtu = tun.mtu()?;
    shared.mtu.store(usize::from(mtu), Ordering::Relaxed);
    let mut batch = ReadBatch::new(mtu);
    let mut runs: Vec<Run> = Vec::with_capacity(BATCH);
    // Relayed datagrams are copied into a relay frame here: the relay path is not the fast path.
    let mut frame: Vec<u8> = Vec::with_capacity(usize::from(u16::MAX));
    let mut answerer = Answerer::new(clock::now());
    let mut mtu_checked = clock::now();

    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        match tun.wait_readable(500) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                on_error(&shared, "waiting for the TUN device", e)?;
                continue;
            }
        }
        batch.clear();
        loop {
            match tun.recv(&mut batch) {
                Ok(_) if batch.is_full() => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if classify(&e) != OsErrorKind::Other => {
                    on_error(&shared, "TUN read", e)?;
                    break;
                }
                Err(e) => {
                    // A packet bigger than the slots (the MTU grew) or a malformed super-packet.
                    tracing::debug!("TUN read: {e}");
                    shared.drops.add(DropReason::NotIp, 1);
                    break;
                }
            }
        }
        let now = clock::now();
        let mut ctx = Context {
            shared: &shared,
            control: &control,
            tun: &tun,
            answerer: &mut answerer,
            frame: &mut frame,
            now,
        };
        if now.duration_since(mtu_checked) >= MTU_CHECK {
            mtu_checked = now;
            // A failure keeps the MTU known (the read needs no new descriptor, but may still fail).
            let current = match tun.mtu() {
                Ok(current) => current,
                Err(e) => {
                    on_error(&shared, "reading the MTU", e)?;
                    mtu
                }
            };
            if current != mtu {
                mtu = current;
                shared.mtu.store(usize::from(mtu), Ordering::Relaxed);
                // Segments already read fit the old slots; new reads get slots of the new size.
                ctx.send_batch(&mut batch, &mut runs);
                batch = ReadBatch::new(mtu);
                continue;
            }
        }
        ctx.send_batch(&mut batch, &mut runs);
    }
}

/// A failed system call of the TX loop: the end if the device is gone; a count and a pause if the
/// host is out of a resource; a count otherwise.
fn on_error(shared: &Shared, what: &str, e: io::Error) -> io::Result<()> {
    match classify(&e) {
        OsErrorKind::Gone => Err(e),
        OsErrorKind::Exhausted => {
            tracing::debug!("{what}: {e}; pausing");
            shared.drops.add(DropReason::ResourceExhausted, 1);
            std::thread::sleep(EXHAUSTED_PAUSE);
            Ok(())
        }
        OsErrorKind::Other => {
            tracing::debug!("{what}: {e}");
            Ok(())
        }
    }
}

/// What sending one batch needs besides the batch.
struct Context<'a> {
    shared: &'a Shared,
    control: &'a mpsc::Sender<ControlMsg>,
    tun: &'a Tun,
    answerer: &'a mut Answerer,
    frame: &'a mut Vec<u8>,
    now: Instant,
}

impl Context<'_> {
    fn send_batch(&mut self, batch: &mut ReadBatch, runs: &mut Vec<Run>) {
        if batch.is_empty() {
            return;
        }
        let (shared, now) = (self.shared, self.now);
        let stamp = shared.stamp(now);
        let mtu = shared.mtu.load(Ordering::Relaxed);
        let routes = shared.routes.load();
        let udp = shared.udp.load();
        let max_segments = udp.max_gso_segments();
        runs.clear();
        let mut write = 0;

        for i in 0..batch.len() {
            let len = batch.packet_len(i);
            let packet = &batch.slot(i)[HEADROOM..HEADROOM + len];
            let Some(peer) = routes.by_destination(packet) else {
                shared.drops.add(DropReason::NoRoute, 1);
                continue;
            };
            let sender = peer.sender.load();
            let endpoint = peer.endpoint.load();
            let (Some(sender), Some(&path)) = (sender.as_deref(), endpoint.as_deref()) else {
                handoff(shared, self.control, peer.id, packet);
                continue;
            };
            // What this path carries; padding stays within it too.
            let limit = too_big::limit(mtu, peer.path_limit.load().as_deref(), &path);
            if len > limit {
                let tun = self.tun;
                let reason = self.answerer.answer(now, packet, limit, |buf| tun.send_one(buf));
                shared.drops.add(reason, 1);
                continue;
            }
            let datagram_len = match sender.encapsulate(now, batch.slot_mut(i), len, limit) {
                Ok(n) => n,
                Err(SendError::Expired | SendError::CounterExhausted) => {
                    let packet = &batch.slot(i)[HEADROOM..HEADROOM + len];
                    handoff(shared, self.control, peer.id, packet);
                    continue;
                }
                Err(SendError::BufferTooSmall) => {
                    shared.drops.add(DropReason::NotIp, 1);
                    continue;
                }
            };
            if sender.needs_rekey(now) {
                peer.note_rekey_wanted(stamp);
            }
            peer.note_data_sent(stamp);
            peer.tx_bytes.fetch_add(datagram_len as u64, Ordering::Relaxed);
            let to = match path {
                Endpoint::Direct(to) => to,
                Endpoint::Relayed { relay } => {
                    let datagram = &batch.slot(i)[..datagram_len];
                    self.send_relayed(&udp, peer, relay, datagram);
                    continue;
                }
            };

            // Pack the datagram right after the previous one; slots only move down, so nothing unread
            // is overwritten.
            let from = i * batch.stride();
            if from != write {
                batch.pack(i, write, datagram_len);
            }
            let start = write;
            write += datagram_len;
            match runs.last_mut() {
                Some(run)
                    if run.to == to
                        && !run.closed
                        && run.count < max_segments
                        && datagram_len <= run.segment
                        && run.end - run.start + datagram_len <= MAX_GSO_BYTES =>
                {
                    run.end = write;
                    run.count += 1;
                    run.closed = datagram_len < run.segment;
                }
                _ => runs.push(Run {
                    peer: Arc::clone(peer),
                    to,
                    start,
                    end: write,
                    segment: datagram_len,
                    count: 1,
                    closed: false,
                }),
            }
        }

        for run in runs.iter() {
            let contents = batch.packed(run.start..run.end);
            let segment_size = (run.count > 1).then_some(run.segment);
            let Err(e) = udp.send(run.to, contents, segment_size) else {
                continue;
            };
            // Retry one datagram at a time: the kernel may refuse segmentation on some paths (and
            // says EINVAL, not EMSGSIZE, for segments larger than the route's MTU).
            if segment_size.is_some() {
                tracing::debug!("GSO send to {} failed ({e}); sending datagrams singly", run.to);
                for datagram in contents.chunks(run.segment) {
                    if let Err(e) = udp.send(run.to, datagram, None) {
                        let path = Endpoint::Direct(run.to);
                        send_failed(shared, &udp, &run.peer, path, datagram.len(), e);
                    }
                }
            } else {
                send_failed(
                    shared,
                    &udp,
                    &run.peer,
                    Endpoint::Direct(run.to),
                    contents.len(),
                    e,
                );
            }
        }
    }

    /// Sends one sealed datagram to a relayed peer: inside a relay frame addressed to its key, with
    /// this node's relay token.
    fn send_relayed(&mut self, udp: &Udp, peer: &PeerShared, relay: SocketAddr, datagram: &[u8]) {
        let token = self.shared.relay_token.load(Ordering::Relaxed).to_le_bytes();
        self.frame.clear();
        write_relay_frame(peer.key, token, datagram, self.frame);
        if let Err(e) = udp.send(relay, self.frame, None) {
            send_failed(
                self.shared,
                udp,
                peer,
                Endpoint::Relayed { relay },
                datagram.len(),
                e,
            );
        }
    }
}

/// A datagram the socket did not take (`datagram_len`: the sealed WireGuard message, without any relay
/// frame). EMSGSIZE means the path carries less than the interface MTU: learn how much from the
/// route, so the next packets too big for it are answered with ICMP.
fn send_failed(
    shared: &Shared,
    udp: &Udp,
    peer: &PeerShared,
    path: Endpoint,
    datagram_len: usize,
    e: io::Error,
) {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => {
            shared.drops.add(DropReason::TooBigUnanswered, 1);
            // The padded packet that did not fit; the path carries less than that.
            let refused = datagram_len.saturating_sub(DATA_OVERHEAD);
            let known = peer.path_limit.load();
            if known
                .as_deref()
                .is_some_and(|k| k.path == path && k.mtu < refused)
            {
                // Sealed before the limit was learned (the rest of a batch): nothing new, and no
                // descriptor spent on asking again.
                return;
            }
            let route_mtu = udp.path_mtu(path.addr());
            if let Err(e) = &route_mtu {
                tracing::debug!("cannot read the route MTU towards {}: {e}", path.addr());
            }
            let mut learned = too_big::learned(path, route_mtu.ok());
            // Never above what just failed, so a route that reports more than it carries cannot
            // make every packet fail and ask again.
            learned.mtu = learned.mtu.min(refused.saturating_sub(1));
            tracing::info!(
                "the path {path} carries packets of at most {} bytes (the kernel refused a larger \
                 datagram); larger ones are answered with ICMP \"too big\"",
                learned.mtu
            );
            peer.path_limit.store(Some(Arc::new(learned)));
        }
        _ if classify(&e) == OsErrorKind::Exhausted => {
            tracing::debug!("send to {path} failed: {e}");
            shared.drops.add(DropReason::ResourceExhausted, 1);
        }
        _ => {
            tracing::debug!("send to {path} failed: {e}");
            shared.drops.add(DropReason::SendFailed, 1);
        }
    }
}

/// No usable session: the control loop holds the packet and starts a handshake.
fn handoff(
    shared: &Shared,
    control: &mpsc::Sender<ControlMsg>,
    peer: meshd_core::node::PeerId,
    packet: &[u8],
) {
    if control
        .try_send(ControlMsg::Unsent {
            peer,
            packet: packet.to_vec(),
        })
        .is_err()
    {
        shared.drops.add(DropReason::QueueFull, 1);
    }
}
