//! A bulk TCP transfer between two namespaces, checked end to end by SHA-256.
//!
//! The data is generated as it is sent (a seeded xorshift stream), so a large transfer costs no
//! disk and no memory; the sender hashes what it wrote, the receiver what it read.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use ring::digest::{Context, SHA256};

use crate::netns::Netns;
use crate::process::now;

const CHUNK: usize = 64 * 1024;
/// Longest a single read or write may block before the transfer counts as stalled.
const STALL: Duration = Duration::from_secs(10);

/// What each end saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    pub elapsed: Duration,
}

impl TransferReport {
    /// Every byte arrived, and nothing else.
    #[track_caller]
    pub fn assert_intact(&self) {
        assert_eq!(
            (self.received_bytes, &self.received_sha256),
            (self.sent_bytes, &self.sent_sha256),
            "the receiver got different data than was sent (bytes, sha256)"
        );
    }

    /// Goodput in Gbit/s; a sanity figure for logs, not a benchmark.
    pub fn gbit_per_s(&self) -> f64 {
        self.received_bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// Sends `bytes` bytes from namespace `from` to `to_addr:port` (a listener in namespace `to`), all
/// within `timeout`. Errors say which end failed and how.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> Result<TransferReport, String> {
    crate::addr::checked(&to_addr.to_string());
    let target = SocketAddr::new(to_addr, port);
    let listener = to
        .enter(|| TcpListener::bind(target))
        .map_err(|e| format!("bind {target} in {}: {e}", to.name()))?;
    let started = now();
    let deadline = started + timeout;

    let receiver = thread::spawn(move || -> Result<(u64, String), String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("accept on {target}: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(STALL)).map_err(|e| e.to_string())?;
        let mut hash = Context::new(&SHA256);
        let mut buf = vec![0; CHUNK];
        let mut total = 0u64;
        loop {
            if now() > deadline {
                return Err(format!("receiving: over {timeout:?} with {total} bytes in"));
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("receiving after {total} bytes: {e}")),
            }
        }
        Ok((total, hex(hash.finish().as_ref())))
    });

    let sender = || -> Result<String, String> {
        let mut stream = from
            .enter(|| TcpStream::connect_timeout(&target, STALL))
            .map_err(|e| format!("connect from {} to {target}: {e}", from.name()))?;
        stream.set_write_timeout(Some(STALL)).map_err(|e| e.to_string())?;
        let mut data = XorShift::seeded(u64::from(port) << 40 ^ bytes);
        let mut hash = Context::new(&SHA256);
        let mut buf = vec![0; CHUNK];
        let mut left = bytes;
        while left > 0 {
            if now() > deadline {
                return Err(format!(
                    "sending: over {timeout:?} with {} bytes out",
                    bytes - left
                ));
            }
            let n = left.min(CHUNK as u64) as usize;
            data.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("sending after {} bytes: {e}", bytes - left))?;
            left -= n as u64;
        }
        // EOF tells the receiver the transfer is complete.
        stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok(hex(hash.finish().as_ref()))
    };
    let sent = sender();
    let received = receiver
        .join()
        .map_err(|_| "the receiving thread panicked".to_owned())?;
    let sent_sha256 = sent?;
    let (received_bytes, received_sha256) = received?;
    Ok(TransferReport {
        sent_bytes: bytes,
        received_bytes,
        sent_sha256,
        received_sha256,
        elapsed: now() - started,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fast, seeded, not cryptographic: only needs to make every byte position distinct in practice.
struct XorShift(u64);

impl XorShift {
    /// Each transfer gets its own stream, so data crossing from another transfer would be caught.
    fn seeded(seed: u64) -> XorShift {
        // One splitmix64 step spreads nearby seeds apart; xorshift must not start at zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_the_standard_one() {
        let mut hash = Context::new(&SHA256);
        hash.update(b"abc");
        assert_eq!(
            hex(hash.finish().as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_data_does_not_repeat_early() {
        let mut data = XorShift::seeded(1);
        let mut a = vec![0; CHUNK];
        let mut b = vec![0; CHUNK];
        data.fill(&mut a);
        data.fill(&mut b);
        assert_ne!(a, b);
        assert!(a.iter().filter(|&&x| x == 0).count() < CHUNK / 64);
        let mut c = vec![0; CHUNK];
        XorShift::seeded(2).fill(&mut c);
        assert_ne!(a, c, "neighbouring seeds must give different streams");
    }
}
