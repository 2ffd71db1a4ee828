//! Packet capture on one interface of a test namespace, without tcpdump: an `AF_PACKET` socket
//! (cooked, `SOCK_DGRAM`, so every packet starts at its IP header whether the link is a veth or a TUN
//! device) read on a thread that has entered the namespace.
//!
//! ```no_run
//! # fn f(ns: &meshd_tests::Netns) {
//! use std::time::Duration;
//! let capture = meshd_tests::capture::Capture::start(ns, "eth0", Duration::from_secs(30));
//! // ... traffic ...
//! let seen = capture.stop();
//! assert_eq!(seen.count_containing(b"secret"), 0, "{}", seen.summary());
//! # }
//! ```
//!
//! Both directions are seen: packets the namespace sends on the interface and packets it receives.
//! A capture runs until [`Capture::stop`] or until its time limit, whichever comes first, and keeps
//! at most [`MAX_PACKETS`] packets (it says so if it dropped any).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::netns::Netns;
use crate::process::now;

/// What one capture keeps at most.
pub const MAX_PACKETS: usize = 200_000;
/// `PACKET_OUTGOING` in `sll_pkttype`: a packet this host sent.
const PACKET_OUTGOING: u8 = 4;

/// One captured packet, from its IP header on.
#[derive(Clone, Debug)]
pub struct Packet {
    /// This namespace sent it (rather than received it).
    pub outgoing: bool,
    pub data: Vec<u8>,
}

/// An IPv4 UDP datagram as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp4 {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Packet {
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.data.windows(needle.len()).any(|w| w == needle)
    }

    /// The addresses and ports if this is an unfragmented IPv4 UDP datagram.
    pub fn udp4(&self) -> Option<Udp4> {
        let d = &self.data;
        if d.len() < 20 || d[0] >> 4 != 4 || d[9] != 17 {
            return None;
        }
        let ihl = usize::from(d[0] & 0x0f) * 4;
        let udp = d.get(ihl..ihl + 8)?;
        Some(Udp4 {
            src: Ipv4Addr::new(d[12], d[13], d[14], d[15]),
            dst: Ipv4Addr::new(d[16], d[17], d[18], d[19]),
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload_len: usize::from(u16::from_be_bytes([udp[4], udp[5]])).saturating_sub(8),
        })
    }
}

/// A capture in progress.
pub struct Capture {
    label: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Captured, String>>>,
}

/// What a capture saw.
#[derive(Debug)]
pub struct Captured {
    /// `<namespace>/<interface>`.
    pub label: String,
    pub packets: Vec<Packet>,
    /// Packets seen but not kept because [`MAX_PACKETS`] were already kept.
    pub dropped: usize,
}

impl Capture {
    /// Starts capturing on `dev` in `ns`; returns once the socket is open, so every packet from then
    /// on is seen. Panics if the capture cannot start (no such interface, no permission).
    #[track_caller]
    pub fn start(ns: &Netns, dev: &str, limit: Duration) -> Capture {
        let label = format!("{}/{dev}", ns.name());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let path = format!("/run/netns/{}", ns.name());
        let thread = {
            let stop = Arc::clone(&stop);
            let label = label.clone();
            let dev = dev.to_owned();
            thread::spawn(move || capture_thread(&path, &dev, label, limit, &stop, &ready_tx))
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                panic!("cannot capture on {label}: {e}");
            }
            Err(_) => panic!("the capture on {label} did not start within 10 s"),
        }
        Capture {
            label,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the capture and returns what it saw.
    #[track_caller]
    pub fn stop(mut self) -> Captured {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a capture is stopped once");
        match thread.join() {
            Ok(Ok(captured)) => captured,
            Ok(Err(e)) => panic!("the capture on {} failed: {e}", self.label),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture_thread(
    netns_path: &str,
    dev: &str,
    label: String,
    limit: Duration,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<Captured, String> {
    let open = || -> Result<(std::os::fd::OwnedFd, usize), String> {
        let ns = File::open(netns_path).map_err(|e| format!("cannot open {netns_path}: {e}"))?;
        // Only this thread moves; the socket stays in the namespace it was made in.
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns({netns_path}): {e}"))?;
        let index = nix::net::if_::if_nametoindex(dev).map_err(|e| format!("no interface {dev}: {e}"))?;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(|e| format!("AF_PACKET socket: {e}"))?;
        // Wakes the loop up to look at the stop flag and the time limit.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        // A big buffer, so a burst is not lost while the thread stores packets.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
        Ok((fd, index as usize))
    };
    let (fd, index) = match open() {
        Ok(opened) => {
            let _ = ready.send(Ok(()));
            opened
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };

    let deadline = now() + limit;
    let mut captured = Captured {
        label,
        packets: Vec::new(),
        dropped: 0,
    };
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) && now() < deadline {
        match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok((len, Some(from))) if from.ifindex() == index => {
                if captured.packets.len() < MAX_PACKETS {
                    captured.packets.push(Packet {
                        outgoing: from.pkttype() == PACKET_OUTGOING,
                        data: buf[..len].to_vec(),
                    });
                } else {
                    captured.dropped += 1;
                }
            }
            Ok(_) => {}
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(format!("recvfrom: {e}")),
        }
    }
    // Packets still queued in the socket arrived before the stop: read them too.
    let _ = setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 1_000));
    while let Ok((len, Some(from))) = recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
        if from.ifindex() == index && captured.packets.len() < MAX_PACKETS {
            captured.packets.push(Packet {
                outgoing: from.pkttype() == PACKET_OUTGOING,
                data: buf[..len].to_vec(),
            });
        }
    }
    Ok(captured)
}

impl Captured {
    /// How many packets contain `needle` anywhere (headers included).
    pub fn count_containing(&self, needle: &[u8]) -> usize {
        self.packets.iter().filter(|p| p.contains(needle)).count()
    }

    /// IPv4 UDP datagrams from `src` to `dst` (any ports) with at least `min_payload` bytes of payload.
    pub fn udp4_between(&self, src: Ipv4Addr, dst: Ipv4Addr, min_payload: usize) -> usize {
        self.packets
            .iter()
            .filter_map(Packet::udp4)
            .filter(|u| u.src == src && u.dst == dst && u.payload_len >= min_payload)
            .count()
    }

    /// One line for messages: how much was seen and a few of the UDP flows.
    pub fn summary(&self) -> String {
        let mut flows: Vec<(Udp4, usize)> = Vec::new();
        for u in self.packets.iter().filter_map(Packet::udp4) {
            let key = Udp4 { payload_len: 0, ..u };
            match flows.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => flows.push((key, 1)),
            }
        }
        flows.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let flows: Vec<String> = flows
            .iter()
            .take(8)
            .map(|(u, n)| format!("{}:{} -> {}:{} x{n}", u.src, u.src_port, u.dst, u.dst_port))
            .collect();
        format!(
            "{}: {} packets ({} sent, {} received, {} not kept); UDP flows: [{}]",
            self.label,
            self.packets.len(),
            self.packets.iter().filter(|p| p.outgoing).count(),
            self.packets.iter().filter(|p| !p.outgoing).count(),
            self.dropped,
            flows.join(", ")
        )
    }
}
