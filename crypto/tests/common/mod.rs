//! A minimal per-peer composition of meshd's crypto pieces, as the daemon's node will do it, plus a
//! virtual clock. Shared by the integration tests.
#![allow(dead_code)]

use meshd_crypto::cookie::{CookieChecker, MacVerdict};
use meshd_crypto::index::IndexTable;
use meshd_crypto::noise::{self, Identity, InitiationState, PeerHandshake, Tai64N};
use meshd_crypto::session::{self, HEADROOM, Receiver, Sender, TAILROOM};
use meshd_crypto::timers::{TimerAction, Timers};
use meshd_crypto::{PresharedKey, PublicKey, StaticSecret};
use meshd_packet::wire::{self, Message};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

pub const MTU: usize = 1420;

/// Virtual time: a monotonic `now` and the wall clock the TAI64N timestamps come from.
#[derive(Clone, Copy)]
pub struct Clock {
    pub epoch: Instant,
    pub now: Instant,
}

impl Clock {
    pub fn new() -> Self {
        // The one real clock read of a test: the epoch its virtual time counts from.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        Clock { epoch, now: epoch }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// A wall clock that starts in 2023 and moves with the virtual clock.
    pub fn wall(&self) -> Tai64N {
        Tai64N::from_unix(Duration::from_secs(1_700_000_000) + (self.now - self.epoch))
    }
}

/// What handling one datagram produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Send this datagram back (a handshake response or a cookie reply).
    Reply(Vec<u8>),
    /// A data message with this (padded) plaintext.
    Data(Vec<u8>),
    /// An empty data message.
    Keepalive,
    /// A handshake response completed our initiation; the new session is ready to send on.
    HandshakeComplete,
    /// A cookie reply was stored.
    CookieStored,
}

/// One meshd node with one peer.
pub struct Meshd {
    pub identity: Identity,
    pub peer: PeerHandshake,
    pub checker: CookieChecker,
    pub timers: Timers,
    pub indices: IndexTable<()>,
    pub rng: ChaCha20Rng,
    pub pending: Option<InitiationState>,
    pub sender: Option<Sender>,
    /// A responder's new sending half, held back until the initiator uses the session.
    pub unconfirmed: Option<Sender>,
    pub receivers: Vec<Receiver>,
    pub under_load: bool,
    pub src: SocketAddr,
}

impl Meshd {
    pub fn new(secret: StaticSecret, remote: PublicKey, psk: Option<[u8; 32]>, seed: u64) -> Self {
        let identity = Identity::new(secret);
        let peer = PeerHandshake::new(&identity, remote, psk.map(PresharedKey::from_bytes)).unwrap();
        let checker = CookieChecker::new(identity.public_key());
        Meshd {
            identity,
            peer,
            checker,
            timers: Timers::new(None),
            indices: IndexTable::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
            pending: None,
            sender: None,
            unconfirmed: None,
            receivers: Vec::new(),
            under_load: false,
            src: "192.0.2.2:51820".parse().unwrap(),
        }
    }

    /// Builds an initiation and records it in the timers.
    pub fn initiate(&mut self, clock: &Clock, retry: bool) -> Vec<u8> {
        if let Some(old) = self.pending.take() {
            self.indices.remove(old.local_index());
        }
        let index = self.indices.insert((), &mut self.rng);
        let (state, msg) = noise::create_initiation(
            &self.identity,
            &mut self.peer,
            index,
            clock.wall(),
            clock.now,
            &mut self.rng,
        )
        .unwrap();
        self.pending = Some(state);
        self.timers
            .on_handshake_initiated(clock.now, retry, &mut self.rng);
        self.timers.on_authenticated_packet_sent(clock.now);
        self.timers.on_authenticated_packet_traversal(clock.now);
        msg.as_bytes().to_vec()
    }

    /// Seals `payload` on the current session.
    pub fn send(&mut self, clock: &Clock, payload: &[u8]) -> Vec<u8> {
        let sender = self.sender.as_ref().expect("a session to send on");
        let mut buf = vec![0u8; HEADROOM + payload.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        let n = sender
            .encapsulate(clock.now, &mut buf, payload.len(), MTU)
            .unwrap();
        buf.truncate(n);
        if !payload.is_empty() {
            self.timers.on_data_sent(clock.now, &mut self.rng);
        }
        self.timers.on_authenticated_packet_sent(clock.now);
        self.timers.on_authenticated_packet_traversal(clock.now);
        buf
    }

    /// Runs the timers and returns the datagrams they ask for.
    pub fn poll(&mut self, clock: &Clock) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(action) = self.timers.poll(clock.now) {
            match action {
                TimerAction::SendInitiation { retry } => out.push(self.initiate(clock, retry)),
                TimerAction::SendKeepalive => {
                    if self.sender.is_some() {
                        out.push(self.send(clock, &[]));
                    }
                }
                TimerAction::ZeroKeys => {
                    self.sender = None;
                    self.unconfirmed = None;
                    self.receivers.clear();
                    self.pending = None;
                }
                TimerAction::GiveUp => {}
            }
        }
        out
    }

    pub fn handle(&mut self, clock: &Clock, datagram: &[u8]) -> Result<Handled, String> {
        let now = clock.now;
        let msg = wire::parse(datagram).map_err(|e| format!("parse: {e}"))?;
        match msg {
            Message::Initiation(m) => {
                match self
                    .checker
                    .check(m, self.src, self.under_load, now, &mut self.rng)
                {
                    Ok(MacVerdict::Accept) => {}
                    Ok(MacVerdict::SendCookie) => {
                        let reply = self.checker.create_reply(m, self.src, now, &mut self.rng);
                        return Ok(Handled::Reply(reply.as_bytes().to_vec()));
                    }
                    Err(e) => return Err(format!("mac: {e}")),
                }
                let incoming = noise::begin_response(&self.identity, m).map_err(|e| format!("begin: {e}"))?;
                if incoming.initiator_static() != self.peer.remote() {
                    return Err("unknown peer".into());
                }
                let index = self.indices.insert((), &mut self.rng);
                let (resp, keys) = match incoming.finish(&mut self.peer, index, now, &mut self.rng) {
                    Ok(r) => r,
                    Err(e) => {
                        self.indices.remove(index);
                        return Err(format!("finish: {e}"));
                    }
                };
                let (tx, rx) = session::new_session(keys, now);
                self.unconfirmed = Some(tx);
                self.receivers.insert(0, rx);
                self.receivers.truncate(3);
                self.timers.on_session_derived(now, false);
                self.timers.on_authenticated_packet_received(now);
                self.timers.on_authenticated_packet_traversal(now);
                self.timers.on_authenticated_packet_sent(now);
                Ok(Handled::Reply(resp.as_bytes().to_vec()))
            }
            Message::Response(m) => {
                self.checker.verify_mac1(m).map_err(|e| format!("mac: {e}"))?;
                let pending = self.pending.as_ref().ok_or("no pending initiation")?;
                let keys = pending
                    .consume_response(&self.identity, &self.peer, m)
                    .map_err(|e| format!("response: {e}"))?;
                self.pending = None;
                let (tx, rx) = session::new_session(keys, now);
                self.sender = Some(tx);
                self.receivers.insert(0, rx);
                self.receivers.truncate(3);
                self.timers.on_handshake_complete(now);
                self.timers.on_session_derived(now, true);
                self.timers.on_authenticated_packet_received(now);
                self.timers.on_authenticated_packet_traversal(now);
                Ok(Handled::HandshakeComplete)
            }
            Message::CookieReply(m) => {
                self.peer
                    .cookies
                    .consume_reply(m, now)
                    .map_err(|e| format!("cookie: {e}"))?;
                Ok(Handled::CookieStored)
            }
            Message::Data { header, .. } => {
                let index = header.receiver_index.get();
                let rx = self
                    .receivers
                    .iter_mut()
                    .find(|r| r.local_index() == index)
                    .ok_or("no session for index")?;
                let mut buf = datagram.to_vec();
                let d = rx.decapsulate(now, &mut buf).map_err(|e| format!("data: {e}"))?;
                let first_receiver = self.receivers[0].local_index() == index;
                if first_receiver && let Some(tx) = self.unconfirmed.take() {
                    // Key confirmation: the initiator used the new session, so we may send on it.
                    self.sender = Some(tx);
                    self.timers.on_handshake_complete(now);
                }
                self.timers.on_authenticated_packet_received(now);
                self.timers.on_authenticated_packet_traversal(now);
                let plain = buf[d.plaintext].to_vec();
                if plain.is_empty() {
                    Ok(Handled::Keepalive)
                } else {
                    self.timers.on_data_received(now);
                    Ok(Handled::Data(plain))
                }
            }
            _ => Err("unexpected message".into()),
        }
    }
}

/// An IPv4 packet of exactly `len` bytes (at least 20), with a valid total length, so boringtun
/// passes it to its tunnel side.
pub fn ipv4_packet(len: usize, fill: u8) -> Vec<u8> {
    assert!(len >= 20);
    let mut p = vec![fill; len];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&[100, 64, 0, 2]);
    p
}

/// An IPv6 packet of exactly `len` bytes (at least 40).
pub fn ipv6_packet(len: usize, fill: u8) -> Vec<u8> {
    assert!(len >= 40);
    let mut p = vec![fill; len];
    p[0] = 0x60;
    p[1..4].fill(0);
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p
}
