//! The TUN device, with the kernel's segmentation offload turned on.
//!
//! With `IFF_VNET_HDR` and TSO, one `read` returns a TCP super-packet of up to 64 KiB that tun-rs splits
//! into MTU-sized segments, and one `write` can hand the kernel a coalesced super-packet: one syscall per
//! ~45 packets instead of one per packet (DESIGN.md section 3).
//!
//! The read side lays segments out in one arena at a fixed stride, each with [`HEADROOM`] bytes in front
//! for the WireGuard header and room behind it for padding and the tag. Full-size segments of one
//! super-packet encrypt to datagrams of exactly `stride` bytes, back to back: a ready UDP GSO buffer.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use meshd_packet::{HEADROOM, TAILROOM};
use socket2::{Domain, Socket, Type};
use tun_rs::{DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

/// Packets one read batch holds: twice tun-rs's ideal batch, so a batch can take a 64 KiB super-packet
/// (tun-rs refuses one with more segments than free slots) even after small packets were read.
pub const BATCH: usize = 2 * IDEAL_BATCH_SIZE;

/// Free slots below which [`Tun::recv`] reads no more into a batch: a super-packet of a TCP flow with an
/// MSS of 512 bytes or more has at most this many segments.
const SUPER_PACKET_SEGMENTS: usize = IDEAL_BATCH_SIZE;

/// Room in front of every packet handed to [`Tun::send`]: the virtio-net header tun-rs writes there.
pub const WRITE_OFFSET: usize = VIRTIO_NET_HDR_LEN;

/// Largest IP packet the kernel hands a TUN reader in one piece (a GSO super-packet).
const MAX_SUPER_PACKET: usize = 65535;

pub struct Tun {
    dev: SyncDevice,
    name: String,
    /// The socket the MTU is read through, opened once: reading it must not need a new descriptor
    /// (the TX thread reads it every second, and a process out of descriptors must keep forwarding).
    ctl: OwnedFd,
}

impl Tun {
    /// Creates the TUN device `name` with offload on. It is never persistent: it disappears with the
    /// process.
    pub fn create(name: &str, mtu: u16) -> io::Result<Tun> {
        let dev = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .offload(true)
            // The default queue of 500 packets drops bursts from a fast sender (Firezone saw the same).
            .tx_queue_len(5000)
            .build_sync()?;
        // Non-blocking, so a reader can drain everything that is queued and then wait in poll(2).
        dev.set_nonblocking(true)?;
        let name = dev.name()?;
        let ctl = Socket::new(Domain::IPV4, Type::DGRAM, None)?.into();
        Ok(Tun { dev, name, ctl })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's MTU (`SIOCGIFMTU` on a socket kept open for it: no descriptor per call).
    pub fn mtu(&self) -> io::Result<u16> {
        // SAFETY: `ifreq` is plain C data for which all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = self.name.as_bytes();
        if name.len() >= req.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        for (to, from) in req.ifr_name.iter_mut().zip(name) {
            *to = *from as libc::c_char;
        }
        // SAFETY: `ctl` is a live socket owned by `self`; `req` is an initialised `ifreq` with a
        // NUL-terminated name (the length check above leaves the last byte zero), which SIOCGIFMTU
        // reads and whose `ifru_mtu` it writes.
        let r = unsafe { libc::ioctl(self.ctl.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a successful SIOCGIFMTU filled `ifru_mtu`, an int, in the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        u16::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("MTU {mtu}")))
    }

    /// Writes one packet that lies after [`WRITE_OFFSET`] bytes of room in `buf` (for the virtio-net
    /// header, all zero: no offload asked for).
    pub fn send_one(&self, buf: &mut [u8]) -> io::Result<()> {
        if self.dev.tcp_gso() {
            buf[..WRITE_OFFSET].fill(0);
            self.dev.send(buf)?;
        } else {
            self.dev.send(&buf[WRITE_OFFSET..])?;
        }
        Ok(())
    }

    pub fn if_index(&self) -> io::Result<u32> {
        self.dev.if_index()
    }

    /// True when the kernel accepted TCP segmentation offload (super-packets in both directions).
    pub fn offload(&self) -> bool {
        self.dev.tcp_gso()
    }

    /// Waits up to `timeout_ms` (negative: forever) until a packet can be read. Returns false on timeout.
    pub fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        match super::poll::wait(&self.dev, libc::POLLIN, timeout_ms)? {
            Some(revents) if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "TUN device is gone"))
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Reads one packet or super-packet into `batch`, after the segments already there. Returns how many
    /// segments it added; `WouldBlock` when nothing is queued.
    pub fn recv(&self, batch: &mut ReadBatch) -> io::Result<usize> {
        let stride = batch.stride;
        let free = BATCH - batch.len;
        if free < SUPER_PACKET_SEGMENTS {
            return Ok(0);
        }
        let start = batch.len * stride;
        let mut chunks = batch.arena[start..].chunks_exact_mut(stride);
        // A fixed array of slot slices: no allocation per read. The arena holds exactly BATCH slots, so
        // past `free` the iterator runs dry and those entries stay empty (and are never handed out).
        let mut slots: [&mut [u8]; BATCH] = std::array::from_fn(|_| chunks.next().unwrap_or_default());
        let n = self.dev.recv_multiple(
            &mut batch.raw,
            &mut slots[..free],
            &mut batch.sizes[batch.len..batch.len + free],
            HEADROOM,
        )?;
        batch.len += n;
        Ok(n)
    }

    /// Writes every packet queued in `batch`, coalescing TCP and UDP flows into super-packets, and
    /// empties it. Per-packet write errors are returned after the whole batch was tried.
    pub fn send(&self, batch: &mut WriteBatch) -> io::Result<()> {
        if batch.len == 0 {
            return Ok(());
        }
        let result = self
            .dev
            .send_multiple(&mut batch.gro, &mut batch.bufs[..batch.len], WRITE_OFFSET);
        batch.len = 0;
        result.map(|_| ())
    }
}

/// Packets read from the TUN device, laid out at a fixed stride in one arena.
pub struct ReadBatch {
    raw: Vec<u8>,
    arena: Vec<u8>,
    sizes: Vec<usize>,
    stride: usize,
    len: usize,
}

impl ReadBatch {
    /// A batch for packets of up to `mtu` bytes.
    pub fn new(mtu: u16) -> Self {
        let stride = Self::stride_for(mtu);
        ReadBatch {
            raw: vec![0; VIRTIO_NET_HDR_LEN + MAX_SUPER_PACKET],
            arena: vec![0; BATCH * stride],
            sizes: vec![0; BATCH],
            stride,
            len: 0,
        }
    }

    /// Headroom, an MTU-sized packet, and room for padding and the tag.
    pub fn stride_for(mtu: u16) -> usize {
        HEADROOM + usize::from(mtu) + TAILROOM
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when [`Tun::recv`] would read no more into the batch.
    pub fn is_full(&self) -> bool {
        BATCH - self.len < SUPER_PACKET_SEGMENTS
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Length of packet `i` (without headroom).
    pub fn packet_len(&self, i: usize) -> usize {
        self.sizes[i]
    }

    /// Slot `i`: headroom, packet, tailroom.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.arena[i * self.stride..(i + 1) * self.stride]
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.arena[i * self.stride..(i + 1) * self.stride]
    }

    /// The arena from slot `first` to the end of slot `last`, for sending encrypted slots in one call.
    pub fn slots(&self, first: usize, last: usize) -> &[u8] {
        &self.arena[first * self.stride..(last + 1) * self.stride]
    }

    /// Moves `len` bytes from the start of slot `from` to offset `to` in the arena, so datagrams shorter
    /// than the stride can be packed back to back for one GSO send.
    pub fn pack(&mut self, from: usize, to: usize, len: usize) {
        let start = from * self.stride;
        self.arena.copy_within(start..start + len, to);
    }

    /// The arena bytes `range`, after [`pack`](Self::pack).
    pub fn packed(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.arena[range]
    }
}

/// Packets one write batch holds (each buffer can grow to a whole super-packet, so this is kept at
/// tun-rs's ideal batch).
const WRITE_BATCH: usize = IDEAL_BATCH_SIZE;

/// Packets waiting to be written to the TUN device. Each buffer has capacity for a whole super-packet,
/// because GRO appends the payloads of later packets of a flow to the first.
pub struct WriteBatch {
    bufs: Vec<Vec<u8>>,
    gro: GROTable,
    len: usize,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            bufs: (0..WRITE_BATCH)
                .map(|_| Vec::with_capacity(WRITE_OFFSET + MAX_SUPER_PACKET))
                .collect(),
            gro: GROTable::default(),
            len: 0,
        }
    }
}

impl WriteBatch {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == WRITE_BATCH
    }

    /// Queues a copy of `packet`. The caller flushes with [`Tun::send`] when the batch is full.
    pub fn push(&mut self, packet: &[u8]) {
        debug_assert!(!self.is_full(), "flush a full WriteBatch before pushing");
        let Some(buf) = self.bufs.get_mut(self.len) else {
            return;
        };
        buf.clear();
        buf.resize(WRITE_OFFSET, 0);
        buf.extend_from_slice(packet);
        self.len += 1;
    }
}
