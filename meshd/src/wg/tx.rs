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
use meshd_packet::wire::meshd::write_relay_frame;
use tokio::sync::mpsc;

use super::control::ControlMsg;
use super::shared::{PeerShared, Shared};
use crate::node::{DropReason, Endpoint};
use crate::sys::clock;
use crate::sys::tun::{BATCH, ReadBatch, Tun};

/// UDP payload bytes one GSO send may carry (the IP length field's limit, less the headers).
const MAX_GSO_BYTES: usize = 65_000;

/// How often the thread re-reads the MTU (`ip link set mtu` changes it under us).
const MTU_CHECK: Duration = Duration::from_secs(1);

/// A run of datagrams for one GSO send: `count` datagrams of `segment` bytes from `start`, the last
/// possibly shorter (then `closed`).
struct Run {
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
    let mut mtu_checked = clock::now();

    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !tun.wait_readable(500)? {
            continue;
        }
        batch.clear();
        loop {
            match tun.recv(&mut batch) {
                Ok(_) if batch.is_full() => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_gone(&e) => return Err(e),
                Err(e) => {
                    // A packet bigger than the slots (the MTU grew) or a malformed super-packet.
                    tracing::debug!("TUN read: {e}");
                    shared.drops.add(DropReason::NotIp, 1);
                    break;
                }
            }
        }
        let now = clock::now();
        if now.duration_since(mtu_checked) >= MTU_CHECK {
            mtu_checked = now;
            let current = tun.mtu()?;
            if current != mtu {
                mtu = current;
                shared.mtu.store(usize::from(mtu), Ordering::Relaxed);
                // Segments already read fit the old slots; new reads get slots of the new size.
                send_batch(&shared, &control, &mut batch, &mut runs, &mut frame, now);
                batch = ReadBatch::new(mtu);
                continue;
            }
        }
        send_batch(&shared, &control, &mut batch, &mut runs, &mut frame, now);
    }
}

fn send_batch(
    shared: &Shared,
    control: &mpsc::Sender<ControlMsg>,
    batch: &mut ReadBatch,
    runs: &mut Vec<Run>,
    frame: &mut Vec<u8>,
    now: Instant,
) {
    if batch.is_empty() {
        return;
    }
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
            handoff(shared, control, peer.id, packet);
            continue;
        };
        let datagram_len = match sender.encapsulate(now, batch.slot_mut(i), len, mtu) {
            Ok(n) => n,
            Err(SendError::Expired | SendError::CounterExhausted) => {
                let packet = &batch.slot(i)[HEADROOM..HEADROOM + len];
                handoff(shared, control, peer.id, packet);
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
                send_relayed(shared, &udp, peer, relay, datagram, frame);
                continue;
            }
        };

        // Pack the datagram right after the previous one; slots only move down, so nothing unread is
        // overwritten.
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
        if let Err(e) = udp.send(run.to, contents, segment_size) {
            // Retry one datagram at a time: the kernel may refuse segmentation on some paths.
            if segment_size.is_some() {
                tracing::debug!("GSO send to {} failed ({e}); sending datagrams singly", run.to);
                for datagram in contents.chunks(run.segment) {
                    if udp.send(run.to, datagram, None).is_err() {
                        shared.drops.add(DropReason::SendFailed, 1);
                    }
                }
            } else {
                tracing::debug!("send to {} failed: {e}", run.to);
                shared.drops.add(DropReason::SendFailed, 1);
            }
        }
    }
}

/// Sends one sealed datagram to a relayed peer: inside a relay frame addressed to its key.
fn send_relayed(
    shared: &Shared,
    udp: &crate::sys::udp::Udp,
    peer: &PeerShared,
    relay: SocketAddr,
    datagram: &[u8],
    frame: &mut Vec<u8>,
) {
    frame.clear();
    write_relay_frame(peer.key, datagram, frame);
    if let Err(e) = udp.send(relay, frame, None) {
        tracing::debug!("send to relay {relay} failed: {e}");
        shared.drops.add(DropReason::SendFailed, 1);
    }
}

/// No usable session: the control loop holds the packet and starts a handshake.
fn handoff(shared: &Shared, control: &mpsc::Sender<ControlMsg>, peer: crate::node::PeerId, packet: &[u8]) {
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

/// Errors after which the TUN device is unusable: it was deleted, or the descriptor is dead.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::ENXIO)
    ) || e.kind() == io::ErrorKind::BrokenPipe
}
