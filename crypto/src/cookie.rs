//! MAC1/MAC2 and cookie replies: WireGuard's defence against handshake floods (paper 5.4.4, 5.4.7).
//!
//! Every handshake message carries `mac1 = MAC(HASH("mac1----" || Spub_receiver), msg[..mac1])`, so a
//! receiver drops, at the cost of one BLAKE2s, any handshake from someone who does not know its public
//! key. When the receiver is under load it also requires `mac2 = MAC(cookie, msg[..mac2])`, where the
//! cookie `MAC(Rm, source address)` proves the sender can receive at its source address. A sender
//! without a fresh cookie gets a cookie reply instead of a handshake answer: the cookie sealed with
//! XChaCha20-Poly1305 under `HASH("cookie--" || Spub_receiver)`, bound to the `mac1` it answers.
//!
//! Two halves: [`CookieChecker`] belongs to the local identity and checks incoming handshake messages;
//! [`CookieState`] belongs to each peer and stamps outgoing ones and stores that peer's cookie.

use crate::constants::{COOKIE_MAX_AGE, COOKIE_SECRET_MAX_AGE, UNDER_LOAD_HOLD};
use crate::error::CookieError;
use crate::keys::PublicKey;
use crate::primitives::{aead, hash};
use meshd_packet::wire::{COOKIE_LEN, CookieReply, HandshakeInitiation, HandshakeResponse, MAC_LEN};
use rand_core::{CryptoRng, RngCore};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Label of the mac1 key: `HASH(LABEL_MAC1 || Spub)`.
pub const LABEL_MAC1: &[u8; 8] = b"mac1----";
/// Label of the cookie-reply key: `HASH(LABEL_COOKIE || Spub)`.
pub const LABEL_COOKIE: &[u8; 8] = b"cookie--";

/// A handshake message that carries `mac1` and `mac2`: an initiation or a response.
pub trait MacProtected {
    /// The bytes `mac1` covers.
    fn mac1_input(&self) -> &[u8];
    /// The bytes `mac2` covers (up to and including `mac1`).
    fn mac2_input(&self) -> &[u8];
    fn mac1(&self) -> &[u8; MAC_LEN];
    fn mac2(&self) -> &[u8; MAC_LEN];
    fn macs_mut(&mut self) -> (&mut [u8; MAC_LEN], &mut [u8; MAC_LEN]);
    /// The sender index, which a cookie reply to this message names as its receiver.
    fn sender_index(&self) -> u32;
}

impl MacProtected for HandshakeInitiation {
    fn mac1_input(&self) -> &[u8] {
        HandshakeInitiation::mac1_input(self)
    }
    fn mac2_input(&self) -> &[u8] {
        HandshakeInitiation::mac2_input(self)
    }
    fn mac1(&self) -> &[u8; MAC_LEN] {
        &self.mac1
    }
    fn mac2(&self) -> &[u8; MAC_LEN] {
        &self.mac2
    }
    fn macs_mut(&mut self) -> (&mut [u8; MAC_LEN], &mut [u8; MAC_LEN]) {
        (&mut self.mac1, &mut self.mac2)
    }
    fn sender_index(&self) -> u32 {
        self.sender_index.get()
    }
}

impl MacProtected for HandshakeResponse {
    fn mac1_input(&self) -> &[u8] {
        HandshakeResponse::mac1_input(self)
    }
    fn mac2_input(&self) -> &[u8] {
        HandshakeResponse::mac2_input(self)
    }
    fn mac1(&self) -> &[u8; MAC_LEN] {
        &self.mac1
    }
    fn mac2(&self) -> &[u8; MAC_LEN] {
        &self.mac2
    }
    fn macs_mut(&mut self) -> (&mut [u8; MAC_LEN], &mut [u8; MAC_LEN]) {
        (&mut self.mac1, &mut self.mac2)
    }
    fn sender_index(&self) -> u32 {
        self.sender_index.get()
    }
}

/// What the receiver of a handshake message must do with it, given that `mac1` was valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacVerdict {
    /// Process the handshake.
    Accept,
    /// Under load and without a valid `mac2`: answer with [`CookieChecker::create_reply`] and drop it.
    SendCookie,
}

/// The receiving side, one per local identity: checks `mac1`/`mac2` and issues cookies.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    #[zeroize(skip)]
    secret_born: Option<Instant>,
}

impl CookieChecker {
    pub fn new(local: &PublicKey) -> Self {
        CookieChecker {
            mac1_key: hash::hash(&[LABEL_MAC1, local.as_bytes()]),
            cookie_key: hash::hash(&[LABEL_COOKIE, local.as_bytes()]),
            secret: [0; 32],
            secret_born: None,
        }
    }

    /// Checks `mac1` only; what a receiver does when it is not under load.
    pub fn verify_mac1(&self, msg: &impl MacProtected) -> Result<(), CookieError> {
        let expected = hash::mac(&self.mac1_key, &[msg.mac1_input()]);
        if bool::from(expected.ct_eq(msg.mac1())) {
            Ok(())
        } else {
            Err(CookieError::BadMac1)
        }
    }

    /// Checks `mac1`, and under load `mac2` against the cookie for `src`.
    ///
    /// `now` and `rng` are needed because the cookie secret is replaced every two minutes.
    pub fn check(
        &mut self,
        msg: &impl MacProtected,
        src: SocketAddr,
        under_load: bool,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<MacVerdict, CookieError> {
        self.verify_mac1(msg)?;
        if !under_load {
            return Ok(MacVerdict::Accept);
        }
        let cookie = self.cookie_for(src, now, rng);
        let expected = hash::mac(&cookie, &[msg.mac2_input()]);
        if bool::from(expected.ct_eq(msg.mac2())) {
            Ok(MacVerdict::Accept)
        } else {
            Ok(MacVerdict::SendCookie)
        }
    }

    /// The cookie reply answering `msg` from `src`: the current cookie for `src`, sealed to the
    /// sender with `msg`'s `mac1` as associated data.
    pub fn create_reply(
        &mut self,
        msg: &impl MacProtected,
        src: SocketAddr,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> CookieReply {
        let mut cookie = self.cookie_for(src, now, rng);
        let mut reply = CookieReply::new();
        reply.receiver_index.set(msg.sender_index());
        rng.fill_bytes(&mut reply.nonce);
        // xseal fails only on a length mismatch, which the fixed array sizes rule out.
        let sealed = aead::xseal(
            &self.cookie_key,
            &reply.nonce,
            msg.mac1(),
            &cookie,
            &mut reply.encrypted_cookie,
        );
        debug_assert!(sealed.is_ok());
        cookie.zeroize();
        reply
    }

    /// `τ = MAC(Rm, Am)`: the source address bytes (4 or 16) then the port, big-endian.
    fn cookie_for(
        &mut self,
        src: SocketAddr,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> [u8; COOKIE_LEN] {
        let stale = match self.secret_born {
            None => true,
            Some(born) => now.saturating_duration_since(born) >= COOKIE_SECRET_MAX_AGE,
        };
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let port = src.port().to_be_bytes();
        match src.ip() {
            IpAddr::V4(a) => hash::mac(&self.secret, &[&a.octets(), &port]),
            IpAddr::V6(a) => hash::mac(&self.secret, &[&a.octets(), &port]),
        }
    }
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker")
            .field("secret_born", &self.secret_born)
            .finish_non_exhaustive()
    }
}

/// The sending side, one per peer: stamps `mac1` (and `mac2` while a cookie is fresh) on every
/// handshake message to the peer, and takes in the peer's cookie replies.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct CookieState {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookie: [u8; COOKIE_LEN],
    #[zeroize(skip)]
    cookie_received: Option<Instant>,
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl CookieState {
    pub fn new(peer: &PublicKey) -> Self {
        CookieState {
            mac1_key: hash::hash(&[LABEL_MAC1, peer.as_bytes()]),
            cookie_key: hash::hash(&[LABEL_COOKIE, peer.as_bytes()]),
            cookie: [0; COOKIE_LEN],
            cookie_received: None,
            last_mac1: None,
        }
    }

    /// Writes `mac1`, and `mac2` if a cookie younger than [`COOKIE_MAX_AGE`] is held (zeros otherwise).
    pub fn stamp(&mut self, msg: &mut impl MacProtected, now: Instant) {
        let mac1 = hash::mac(&self.mac1_key, &[msg.mac1_input()]);
        msg.macs_mut().0.copy_from_slice(&mac1);
        let mac2 = if self.has_fresh_cookie(now) {
            hash::mac(&self.cookie, &[msg.mac2_input()])
        } else {
            [0; MAC_LEN]
        };
        msg.macs_mut().1.copy_from_slice(&mac2);
        self.last_mac1 = Some(mac1);
    }

    /// Whether a cookie received less than [`COOKIE_MAX_AGE`] ago is held.
    pub fn has_fresh_cookie(&self, now: Instant) -> bool {
        matches!(self.cookie_received, Some(t) if now.saturating_duration_since(t) < COOKIE_MAX_AGE)
    }

    /// Takes in a cookie reply from the peer. It must answer the last message stamped (its `mac1` is
    /// the associated data); each stamped message can be answered once.
    ///
    /// The caller has already matched `reply.receiver_index` to a handshake of this peer.
    pub fn consume_reply(&mut self, reply: &CookieReply, now: Instant) -> Result<(), CookieError> {
        let Some(mac1) = self.last_mac1 else {
            return Err(CookieError::Unexpected);
        };
        let mut cookie = [0u8; COOKIE_LEN];
        aead::xopen(
            &self.cookie_key,
            &reply.nonce,
            &mac1,
            &reply.encrypted_cookie,
            &mut cookie,
        )
        .map_err(|_| CookieError::Decrypt)?;
        self.cookie = cookie;
        cookie.zeroize();
        self.cookie_received = Some(now);
        self.last_mac1 = None;
        Ok(())
    }
}

impl core::fmt::Debug for CookieState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieState")
            .field("cookie_received", &self.cookie_received)
            .finish_non_exhaustive()
    }
}

/// Decides whether the responder is under load (paper 5.4.7, Linux `receive.c`): when the queue of
/// handshakes waiting to be processed is at least 1/8 full, and for [`UNDER_LOAD_HOLD`] after that.
#[derive(Debug, Clone, Default)]
pub struct LoadMonitor {
    last_under_load: Option<Instant>,
}

impl LoadMonitor {
    pub fn new() -> Self {
        Self::default()
    }

    /// A pure function of `now`, the queue depth and what it saw before.
    pub fn under_load(&mut self, now: Instant, queue_len: usize, queue_capacity: usize) -> bool {
        if queue_len >= (queue_capacity / 8).max(1) {
            self.last_under_load = Some(now);
            return true;
        }
        matches!(self.last_under_load, Some(t) if now.saturating_duration_since(t) < UNDER_LOAD_HOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_packet::wire::HandshakeInitiation;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::time::Duration;

    fn setup() -> (CookieChecker, CookieState, ChaCha20Rng, Instant) {
        let receiver = PublicKey::from_bytes([9; 32]);
        // Tests need one real Instant as the epoch of their virtual clock; nothing else reads it.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        (
            CookieChecker::new(&receiver),
            CookieState::new(&receiver),
            ChaCha20Rng::seed_from_u64(1),
            epoch,
        )
    }

    fn message(sender: u32) -> HandshakeInitiation {
        let mut m = HandshakeInitiation::new();
        m.sender_index.set(sender);
        m.unencrypted_ephemeral = [sender as u8; 32];
        m
    }

    const SRC: &str = "192.0.2.1:51820";

    #[test]
    fn mac1_is_checked_without_load() {
        let (mut checker, mut state, mut rng, now) = setup();
        let mut m = message(1);
        state.stamp(&mut m, now);
        assert_eq!(m.mac2, [0; 16], "no cookie yet, so no mac2");
        let src = SRC.parse().unwrap();
        assert_eq!(
            checker.check(&m, src, false, now, &mut rng),
            Ok(MacVerdict::Accept)
        );
        m.unencrypted_ephemeral[0] ^= 1;
        assert_eq!(
            checker.check(&m, src, false, now, &mut rng),
            Err(CookieError::BadMac1)
        );

        let mut other = CookieState::new(&PublicKey::from_bytes([8; 32]));
        let mut m = message(1);
        other.stamp(&mut m, now);
        assert_eq!(
            checker.verify_mac1(&m),
            Err(CookieError::BadMac1),
            "mac1 for another receiver"
        );
    }

    #[test]
    fn cookie_round_trip_under_load() {
        let (mut checker, mut state, mut rng, now) = setup();
        let src: SocketAddr = SRC.parse().unwrap();
        let mut m = message(7);
        state.stamp(&mut m, now);
        assert_eq!(
            checker.check(&m, src, true, now, &mut rng),
            Ok(MacVerdict::SendCookie)
        );

        let reply = checker.create_reply(&m, src, now, &mut rng);
        assert_eq!(reply.receiver_index.get(), 7);
        state.consume_reply(&reply, now).unwrap();
        assert_eq!(
            state.consume_reply(&reply, now),
            Err(CookieError::Unexpected),
            "answered once"
        );

        let t = now + Duration::from_secs(1);
        let mut m = message(8);
        state.stamp(&mut m, t);
        assert_ne!(m.mac2, [0; 16]);
        assert_eq!(checker.check(&m, src, true, t, &mut rng), Ok(MacVerdict::Accept));

        let elsewhere: SocketAddr = "192.0.2.1:51821".parse().unwrap();
        assert_eq!(
            checker.check(&m, elsewhere, true, t, &mut rng),
            Ok(MacVerdict::SendCookie)
        );
    }

    #[test]
    fn cookie_reply_bound_to_the_mac1_it_answers() {
        let (mut checker, mut state, mut rng, now) = setup();
        let src: SocketAddr = SRC.parse().unwrap();
        let mut first = message(1);
        state.stamp(&mut first, now);
        let reply_to_first = checker.create_reply(&first, src, now, &mut rng);
        let mut second = message(2);
        state.stamp(&mut second, now);
        assert_eq!(
            state.consume_reply(&reply_to_first, now),
            Err(CookieError::Decrypt)
        );

        let mut tampered = checker.create_reply(&second, src, now, &mut rng);
        tampered.encrypted_cookie[3] ^= 4;
        assert_eq!(state.consume_reply(&tampered, now), Err(CookieError::Decrypt));
    }

    #[test]
    fn cookie_expires_and_secret_rotates() {
        let (mut checker, mut state, mut rng, now) = setup();
        let src: SocketAddr = SRC.parse().unwrap();
        let mut m = message(1);
        state.stamp(&mut m, now);
        let reply = checker.create_reply(&m, src, now, &mut rng);
        state.consume_reply(&reply, now).unwrap();

        let nearly = now + COOKIE_MAX_AGE - Duration::from_millis(1);
        assert!(state.has_fresh_cookie(nearly));
        assert!(!state.has_fresh_cookie(now + COOKIE_MAX_AGE));

        // A mac2 made with the old cookie stops working once the secret rotates.
        let mut m = message(2);
        state.stamp(&mut m, nearly);
        assert_eq!(
            checker.check(&m, src, true, nearly, &mut rng),
            Ok(MacVerdict::Accept)
        );
        let later = now + COOKIE_SECRET_MAX_AGE;
        assert_eq!(
            checker.check(&m, src, true, later, &mut rng),
            Ok(MacVerdict::SendCookie)
        );
    }

    #[test]
    fn under_load_follows_the_queue_and_holds_one_second() {
        let (.., now) = setup();
        let mut load = LoadMonitor::new();
        assert!(!load.under_load(now, 0, 4096));
        assert!(!load.under_load(now, 511, 4096));
        assert!(load.under_load(now, 512, 4096));
        assert!(load.under_load(now + Duration::from_millis(999), 0, 4096));
        assert!(!load.under_load(now + UNDER_LOAD_HOLD, 0, 4096));
        assert!(
            !LoadMonitor::new().under_load(now, 0, 4),
            "a tiny queue is not loaded while empty"
        );
        assert!(LoadMonitor::new().under_load(now, 1, 4));
    }
}
