//! Transport sessions (paper 5.4.6): the sending and receiving halves of one handshake's keys.
//!
//! The halves are separate so the TX and RX threads never share a lock per packet: [`Sender`] works
//! from `&self` (its counter is an `AtomicU64`) and can sit in an `Arc` swapped in when a new session
//! is derived; [`Receiver`] with its [`ReplayWindow`] is owned by the receiving thread.
//!
//! Both work in place on the caller's buffer, which reserves [`HEADROOM`] bytes for the data header
//! before the packet and at least [`TAILROOM`] after it for padding and tag, so no packet is copied.

use crate::constants::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME};
use crate::error::{RecvError, SendError};
use crate::noise::SessionKeys;
use crate::primitives::aead::{ChaChaPoly, TAG_LEN, counter_nonce};
use crate::replay::ReplayWindow;
use meshd_packet::ParseError;
use meshd_packet::wire::{DATA_HEADER_LEN, DATA_MIN_LEN, DATA_PADDING_MULTIPLE, DataHeader, TYPE_DATA};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use zerocopy::{FromBytes, IntoBytes};

/// Bytes before the plaintext that [`Sender::encapsulate`] fills with the data header.
pub const HEADROOM: usize = DATA_HEADER_LEN;
/// Bytes after the plaintext that [`Sender::encapsulate`] may need: up to 15 of padding and the tag
/// (32 covers both, and is what meshd's packet buffers reserve).
pub const TAILROOM: usize = 2 * TAG_LEN;

// meshd's packet buffers must leave the room encapsulation writes into.
const _: () = assert!(meshd_packet::buf::HEADROOM >= HEADROOM && meshd_packet::buf::TAILROOM >= TAILROOM);

/// Splits the keys of a finished handshake into the two halves. `now` is the session's birth, from
/// which REKEY_AFTER_TIME and REJECT_AFTER_TIME count.
pub fn new_session(keys: SessionKeys, now: Instant) -> (Sender, Receiver) {
    let sender = Sender {
        key: ChaChaPoly::new(&keys.sending),
        counter: AtomicU64::new(0),
        remote_index: keys.remote_index,
        born: now,
        reject_at: now + REJECT_AFTER_TIME,
        initiator: keys.initiator,
    };
    let receiver = Receiver {
        key: ChaChaPoly::new(&keys.receiving),
        replay: ReplayWindow::new(),
        local_index: keys.local_index,
        born: now,
        reject_at: now + REJECT_AFTER_TIME,
        initiator: keys.initiator,
    };
    (sender, receiver)
}

/// Plaintext length after padding to a multiple of 16 (paper 5.4.6), never past `mtu` unless the
/// packet itself is longer (Linux does the same, so padding cannot push a full-MTU packet over).
#[inline]
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let padded = len.div_ceil(DATA_PADDING_MULTIPLE) * DATA_PADDING_MULTIPLE;
    if padded > mtu { len.max(mtu) } else { padded }
}

/// The sending half of a session.
pub struct Sender {
    key: ChaChaPoly,
    counter: AtomicU64,
    remote_index: u32,
    born: Instant,
    /// `born + REJECT_AFTER_TIME`, so the per-packet check is one comparison.
    reject_at: Instant,
    initiator: bool,
}

impl Sender {
    /// Turns `buf[HEADROOM..HEADROOM + plaintext_len]` into a transport data message in place and
    /// returns its length (the datagram is `buf[..len]`).
    ///
    /// Writes the 16-byte header into `buf[..16]`, zero padding after the plaintext up to
    /// [`padded_len`]`(plaintext_len, mtu)`, then the tag. `buf` must have room for that: at least
    /// `HEADROOM + plaintext_len + TAILROOM` bytes always suffices. Pass the tunnel MTU as `mtu` (or
    /// `usize::MAX` for plain multiple-of-16 padding).
    ///
    /// Refuses at REJECT_AFTER_MESSAGES messages and at REJECT_AFTER_TIME age.
    #[inline]
    pub fn encapsulate(
        &self,
        now: Instant,
        buf: &mut [u8],
        plaintext_len: usize,
        mtu: usize,
    ) -> Result<usize, SendError> {
        let padded = padded_len(plaintext_len, mtu);
        let total = HEADROOM + padded + TAG_LEN;
        if buf.len() < total {
            return Err(SendError::BufferTooSmall);
        }
        if now >= self.reject_at {
            return Err(SendError::Expired);
        }
        // Relaxed suffices: the counter only has to be unique per message, and the AEAD does not care
        // in which order threads obtained their values.
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            // Keep the counter pinned so it cannot wrap around to reuse nonces after 2^64 calls.
            self.counter.store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
            return Err(SendError::CounterExhausted);
        }

        let (header, rest) = buf.split_at_mut(HEADROOM);
        header.copy_from_slice(DataHeader::new(self.remote_index, counter).as_bytes());
        let (body, tail) = rest.split_at_mut(padded);
        if padded > plaintext_len {
            // Skipping the call when there is no padding matters for small packets: an empty fill
            // still costs a memset call.
            body[plaintext_len..].fill(0);
        }
        let Some(tag) = tail.first_chunk_mut::<TAG_LEN>() else {
            return Err(SendError::BufferTooSmall);
        };
        self.key
            .seal_in_place(counter_nonce(counter), &[], body, tag)
            .map_err(|_| SendError::BufferTooSmall)?;
        Ok(total)
    }

    /// The peer's index, the receiver field of every message sent.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Messages sent so far (the next counter).
    pub fn messages_sent(&self) -> u64 {
        self.counter.load(Ordering::Relaxed).min(REJECT_AFTER_MESSAGES)
    }

    pub fn born(&self) -> Instant {
        self.born
    }

    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether sending on this session should start a new handshake (Linux `keep_key_fresh` on
    /// send): after REKEY_AFTER_MESSAGES messages, or REKEY_AFTER_TIME for the session's initiator.
    pub fn needs_rekey(&self, now: Instant) -> bool {
        self.messages_sent() >= REKEY_AFTER_MESSAGES
            || (self.initiator && now.saturating_duration_since(self.born) >= REKEY_AFTER_TIME)
    }

    /// Whether the session can no longer send.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.messages_sent() >= REJECT_AFTER_MESSAGES
            || now.saturating_duration_since(self.born) >= REJECT_AFTER_TIME
    }
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("remote_index", &self.remote_index)
            .field("messages_sent", &self.messages_sent())
            .finish_non_exhaustive()
    }
}

/// A transport message that authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// The message counter.
    pub counter: u64,
    /// Where the plaintext (the padded packet; empty for a keepalive) now sits in the buffer.
    pub plaintext: Range<usize>,
}

/// The receiving half of a session, with its replay window.
pub struct Receiver {
    key: ChaChaPoly,
    replay: ReplayWindow,
    local_index: u32,
    born: Instant,
    reject_at: Instant,
    initiator: bool,
}

impl Receiver {
    /// Authenticates and decrypts the transport data message `datagram` in place.
    ///
    /// The counter is checked against the replay window before decrypting (cheap rejection) and
    /// recorded only after the tag verified. On error the buffer's contents are unspecified.
    #[inline]
    pub fn decapsulate(&mut self, now: Instant, datagram: &mut [u8]) -> Result<Decapsulated, RecvError> {
        if datagram.len() < DATA_MIN_LEN {
            return Err(RecvError::Malformed(if datagram.len() < 4 {
                ParseError::Truncated
            } else {
                ParseError::BadMessageLength
            }));
        }
        let (header, _) = DataHeader::read_from_prefix(datagram).map_err(|_| ParseError::Truncated)?;
        if header.message_type != TYPE_DATA {
            return Err(RecvError::Malformed(ParseError::UnknownType));
        }
        if header.reserved != [0; 3] {
            return Err(RecvError::Malformed(ParseError::ReservedNotZero));
        }
        if header.receiver_index.get() != self.local_index {
            return Err(RecvError::WrongIndex);
        }
        if now >= self.reject_at {
            return Err(RecvError::Expired);
        }
        let counter = header.counter.get();
        if !self.replay.check(counter) {
            return Err(RecvError::Replayed);
        }
        let plain_len = self
            .key
            .open_in_place(counter_nonce(counter), &[], &mut datagram[HEADROOM..])
            .map_err(|_| RecvError::Decrypt)?
            .len();
        if !self.replay.accept(counter) {
            return Err(RecvError::Replayed);
        }
        Ok(Decapsulated {
            counter,
            plaintext: HEADROOM..HEADROOM + plain_len,
        })
    }

    /// Our index for this session.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    pub fn born(&self) -> Instant {
        self.born
    }

    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether receiving on this session should start a new handshake (Linux `keep_key_fresh` on
    /// receive): the initiator does so once the session is REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT -
    /// REKEY_TIMEOUT old, so the new session is ready before this one is refused.
    pub fn needs_rekey(&self, now: Instant) -> bool {
        use crate::constants::{KEEPALIVE_TIMEOUT, REKEY_TIMEOUT};
        self.initiator
            && now.saturating_duration_since(self.born)
                >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.born) >= REJECT_AFTER_TIME
    }

    /// The replay window, for inspection.
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("local_index", &self.local_index)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(now: Instant) -> ((Sender, Receiver), (Sender, Receiver)) {
        let a = SessionKeys {
            sending: [1; 32],
            receiving: [2; 32],
            local_index: 10,
            remote_index: 20,
            initiator: true,
        };
        let b = SessionKeys {
            sending: [2; 32],
            receiving: [1; 32],
            local_index: 20,
            remote_index: 10,
            initiator: false,
        };
        (new_session(a, now), new_session(b, now))
    }

    fn epoch() -> Instant {
        // Tests need one real Instant as the epoch of their virtual clock; nothing else reads it.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xAA; HEADROOM + payload.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        buf
    }

    #[test]
    fn padding_rule() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(16, 1420), 16);
        assert_eq!(padded_len(1419, 1420), 1420, "capped at the MTU");
        assert_eq!(padded_len(1420, 1420), 1420);
        assert_eq!(padded_len(1420, usize::MAX), 1424);
        assert_eq!(padded_len(1500, 1420), 1500, "never shorter than the packet");
    }

    #[test]
    fn round_trip_in_place_with_header_padding_and_tag() {
        let now = epoch();
        let ((a_tx, _), (_, mut b_rx)) = pair(now);
        for len in [0usize, 1, 15, 16, 17, 100, 1420] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = frame(&payload);
            let n = a_tx.encapsulate(now, &mut buf, len, usize::MAX).unwrap();
            assert_eq!(n, HEADROOM + padded_len(len, usize::MAX) + TAG_LEN);
            assert_eq!(&buf[..4], &[4, 0, 0, 0]);
            assert_eq!(&buf[4..8], &20u32.to_le_bytes());
            let d = b_rx.decapsulate(now, &mut buf[..n]).unwrap();
            let plain = &buf[d.plaintext.clone()];
            assert_eq!(&plain[..len], &payload[..]);
            assert!(plain[len..].iter().all(|&b| b == 0), "padding is zeros");
        }
    }

    #[test]
    fn replay_tamper_and_wrong_index_are_refused() {
        let now = epoch();
        let ((a_tx, _), (_, mut b_rx)) = pair(now);
        let mut buf = frame(b"hello");
        let n = a_tx.encapsulate(now, &mut buf, 5, 1420).unwrap();
        let wire = buf[..n].to_vec();

        let mut t = wire.clone();
        t[n - 1] ^= 1;
        assert_eq!(b_rx.decapsulate(now, &mut t), Err(RecvError::Decrypt));
        // The forged copy must not have consumed the counter.
        let mut ok = wire.clone();
        assert!(b_rx.decapsulate(now, &mut ok).is_ok());
        let mut again = wire.clone();
        assert_eq!(b_rx.decapsulate(now, &mut again), Err(RecvError::Replayed));

        let mut other = wire.clone();
        other[4] ^= 1;
        assert_eq!(b_rx.decapsulate(now, &mut other), Err(RecvError::WrongIndex));
        assert!(matches!(
            b_rx.decapsulate(now, &mut wire.clone()[..31]),
            Err(RecvError::Malformed(_))
        ));
    }

    #[test]
    fn buffer_must_hold_padding_and_tag() {
        let now = epoch();
        let ((a_tx, _), _) = pair(now);
        let mut buf = vec![0u8; HEADROOM + 17 + 30];
        assert_eq!(
            a_tx.encapsulate(now, &mut buf, 17, usize::MAX),
            Err(SendError::BufferTooSmall)
        );
        let mut buf = vec![0u8; HEADROOM + 17 + 31];
        assert!(a_tx.encapsulate(now, &mut buf, 17, usize::MAX).is_ok());
    }

    #[test]
    fn ages_out_at_reject_after_time() {
        let now = epoch();
        let ((a_tx, a_rx), (b_tx, mut b_rx)) = pair(now);
        assert!(!a_tx.needs_rekey(now + REKEY_AFTER_TIME - std::time::Duration::from_millis(1)));
        assert!(a_tx.needs_rekey(now + REKEY_AFTER_TIME), "the initiator rekeys");
        assert!(
            !b_tx.needs_rekey(now + REKEY_AFTER_TIME),
            "the responder does not"
        );
        assert!(a_rx.needs_rekey(now + std::time::Duration::from_secs(165)));
        assert!(!a_rx.needs_rekey(now + std::time::Duration::from_secs(164)));

        let late = now + REJECT_AFTER_TIME;
        let mut buf = frame(b"x");
        assert_eq!(a_tx.encapsulate(late, &mut buf, 1, 1420), Err(SendError::Expired));
        let n = a_tx.encapsulate(now, &mut buf, 1, 1420).unwrap();
        assert_eq!(b_rx.decapsulate(late, &mut buf[..n]), Err(RecvError::Expired));
    }

    #[test]
    fn refuses_to_send_at_reject_after_messages() {
        let now = epoch();
        let ((a_tx, _), _) = pair(now);
        a_tx.counter.store(REJECT_AFTER_MESSAGES - 1, Ordering::Relaxed);
        let mut buf = frame(b"x");
        assert!(a_tx.encapsulate(now, &mut buf, 1, 1420).is_ok());
        assert_eq!(
            a_tx.encapsulate(now, &mut buf, 1, 1420),
            Err(SendError::CounterExhausted)
        );
        assert_eq!(
            a_tx.encapsulate(now, &mut buf, 1, 1420),
            Err(SendError::CounterExhausted)
        );
        assert!(a_tx.is_expired(now));
        assert!(a_tx.needs_rekey(now));
    }

    #[test]
    fn sender_is_shareable_between_threads() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Sender>();
        fn assert_send<T: Send>() {}
        assert_send::<Receiver>();
    }
}
