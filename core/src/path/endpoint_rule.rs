//! The node's path rule from before the path layer (`node::endpoint::Paths`: two slots and three
//! flags), as the reference the active-backup policy is checked against: its tests, ported one to one,
//! and a differential test that runs random event sequences through both and compares every answer.
//!
//! An event of the old rule maps onto the path layer as the node will map it:
//!
//! | old `Paths`                  | path layer                                                   |
//! |------------------------------|--------------------------------------------------------------|
//! | `configure_direct(a)`        | `PathSet::handle_candidates(&[a])`                           |
//! | `configure_relay(r)`         | `PathSet::handle_relay(r.map(|r| (relay key, r)))`           |
//! | `on_initiation`, `on_response`, `on_data` | `PathSet::handle_received(.., Received::*, now)` |
//! | `for_initiation(retry)`      | `select_for_initiation`, then `PathSet::on_initiation_sent`  |
//! | `active()`                   | `select`                                                     |

use std::net::SocketAddr;
use std::time::Instant;

use meshd_crypto::PublicKey;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::{PathKind, PathSet, Received, select, select_for_initiation};

// The old rule is the node's own `Paths`, the code that ships, not a copy.
use crate::node::{Endpoint, Paths as OldPaths};

/// A peer's `PathSet` behind the old rule's interface, so the old tests read unchanged.
struct Paths {
    set: PathSet,
    now: Instant,
}

const RELAY_KEY: [u8; 32] = [9; 32];

fn relay_kind() -> PathKind {
    PathKind::Relayed {
        relay: PublicKey::from_bytes(RELAY_KEY),
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            set: PathSet::default(),
            now: crate::test_clock::epoch(),
        }
    }
}

impl Paths {
    fn endpoint(&self, id: Option<super::PathId>) -> Option<Endpoint> {
        let path = self.set.get(id?).expect("the policy picks a path of the set");
        Some(match path.kind() {
            PathKind::Direct => Endpoint::Direct(path.remote()),
            PathKind::Relayed { .. } => Endpoint::Relayed { relay: path.remote() },
        })
    }

    fn direct(&self) -> Option<SocketAddr> {
        self.set.newest_direct().map(|p| p.remote())
    }

    fn relay(&self) -> Option<SocketAddr> {
        self.set.newest_relayed().map(|p| p.remote())
    }

    fn active(&self) -> Option<Endpoint> {
        self.endpoint(select(&self.set, self.now))
    }

    fn for_initiation(&mut self, retry: bool) -> Option<Endpoint> {
        let id = select_for_initiation(&self.set, retry, self.now)?;
        self.set.on_initiation_sent(id);
        self.endpoint(Some(id))
    }

    fn configure_direct(&mut self, addr: SocketAddr) {
        self.set.handle_candidates(&[addr]);
    }

    fn configure_relay(&mut self, relay: Option<SocketAddr>) {
        self.set
            .handle_relay(relay.map(|r| (PublicKey::from_bytes(RELAY_KEY), r)));
    }

    fn received(&mut self, from: Endpoint, what: Received) {
        let (remote, kind) = match from {
            Endpoint::Direct(addr) => (addr, PathKind::Direct),
            Endpoint::Relayed { relay } => (relay, relay_kind()),
        };
        self.set.handle_received(None, remote, kind, what, self.now);
    }

    fn on_data(&mut self, from: Endpoint) {
        self.received(from, Received::Data);
    }

    fn on_initiation(&mut self, from: Endpoint) {
        self.received(from, Received::Initiation);
    }

    fn on_response(&mut self, from: Endpoint) {
        self.received(from, Received::Response);
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const DIRECT: &str = "192.0.2.1:51820";
const STALE: &str = "192.0.2.9:51820";
const RELAY: &str = "203.0.113.1:51820";

fn relayed() -> Endpoint {
    Endpoint::Relayed { relay: addr(RELAY) }
}

fn both() -> Paths {
    let mut p = Paths::default();
    p.configure_direct(addr(DIRECT));
    p.configure_relay(Some(addr(RELAY)));
    p
}

#[test]
fn direct_is_active_when_known() {
    let mut p = Paths::default();
    assert_eq!(p.active(), None);
    p.configure_relay(Some(addr(RELAY)));
    assert_eq!(p.active(), Some(relayed()));
    p.configure_direct(addr(DIRECT));
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
}

#[test]
fn retries_alternate_between_known_paths() {
    let mut p = both();
    assert_eq!(p.for_initiation(false), Some(Endpoint::Direct(addr(DIRECT))));
    assert_eq!(p.for_initiation(true), Some(relayed()));
    assert_eq!(p.for_initiation(true), Some(Endpoint::Direct(addr(DIRECT))));
    // A new handshake starts on the active path again.
    assert_eq!(p.for_initiation(true), Some(relayed()));
    assert_eq!(p.for_initiation(false), Some(Endpoint::Direct(addr(DIRECT))));

    let mut only_relay = Paths::default();
    only_relay.configure_relay(Some(addr(RELAY)));
    assert_eq!(only_relay.for_initiation(false), Some(relayed()));
    assert_eq!(only_relay.for_initiation(true), Some(relayed()));
}

#[test]
fn a_response_over_the_relay_keeps_the_direct_address_but_uses_the_relay() {
    let mut p = both();
    p.for_initiation(false);
    p.for_initiation(true);
    p.on_response(relayed());
    assert_eq!(p.active(), Some(relayed()));
    assert_eq!(p.direct(), Some(addr(DIRECT)));
    // New handshakes stay on the relay; a retry still tries the direct address.
    assert_eq!(p.for_initiation(false), Some(relayed()));
    assert_eq!(p.for_initiation(true), Some(Endpoint::Direct(addr(DIRECT))));
    // Data reported over the relay changes nothing; data arriving directly moves the peer back.
    p.on_data(relayed());
    assert_eq!(p.active(), Some(relayed()));
    p.on_data(Endpoint::Direct(addr(STALE)));
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
}

#[test]
fn the_second_relayed_initiation_without_direct_traffic_moves_to_the_relay() {
    let mut p = both();
    p.on_initiation(relayed());
    assert_eq!(
        p.active(),
        Some(Endpoint::Direct(addr(DIRECT))),
        "first one: answer directly"
    );
    p.on_initiation(relayed());
    assert_eq!(p.active(), Some(relayed()), "the peer does not hear us directly");

    // Something arriving directly in between resets the count.
    let mut p = both();
    p.on_initiation(relayed());
    p.on_initiation(Endpoint::Direct(addr(DIRECT)));
    p.on_initiation(relayed());
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
}

#[test]
fn a_relayed_initiation_teaches_the_relay_of_a_peer_without_one() {
    let mut p = Paths::default();
    p.on_initiation(relayed());
    assert_eq!(p.active(), Some(relayed()));
    p.on_data(Endpoint::Direct(addr(DIRECT)));
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
    assert_eq!(p.relay(), Some(addr(RELAY)));
}

#[test]
fn configuring_a_new_direct_address_leaves_the_relay_and_the_same_one_does_not() {
    let mut p = both();
    p.on_response(relayed());
    p.configure_direct(addr(DIRECT));
    assert_eq!(p.active(), Some(relayed()), "nothing new");
    p.configure_direct(addr(STALE));
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
    p.configure_relay(None);
    assert_eq!(p.relay(), None);
    assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
}

#[test]
fn the_policy_answers_as_the_old_rule_did_for_any_sequence_of_events() {
    // Few addresses, so that sequences come back to known ones: three for the peer, two relays.
    let directs = [addr(DIRECT), addr(STALE), addr("192.0.2.5:4500")];
    let relays = [addr(RELAY), addr("203.0.113.2:51820")];
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for sequence in 0..2_000 {
        let mut old = OldPaths::default();
        let mut new = Paths::default();
        let mut log = Vec::new();
        for _ in 0..40 {
            let pick = |rng: &mut ChaCha8Rng, n: usize| rng.next_u32() as usize % n;
            let direct = directs[pick(&mut rng, directs.len())];
            let relay = relays[pick(&mut rng, relays.len())];
            let from = if rng.next_u32() % 2 == 0 {
                Endpoint::Direct(direct)
            } else {
                Endpoint::Relayed { relay }
            };
            let event = pick(&mut rng, 8);
            match event {
                0 => log.push(format!("configure_direct({direct})")),
                1 => {}
                2 => log.push(format!("on_initiation({from:?})")),
                3 => log.push(format!("on_response({from:?})")),
                4 => log.push(format!("on_data({from:?})")),
                _ => log.push(format!("for_initiation(retry: {})", event != 5)),
            }
            match event {
                0 => {
                    old.configure_direct(direct);
                    new.configure_direct(direct);
                }
                1 => {
                    let relay = (rng.next_u32() % 4 != 0).then_some(relay);
                    log.push(format!("configure_relay({relay:?})"));
                    old.configure_relay(relay);
                    new.configure_relay(relay);
                }
                2 => {
                    old.on_initiation(from);
                    new.on_initiation(from);
                }
                3 => {
                    old.on_response(from);
                    new.on_response(from);
                }
                4 => {
                    old.on_data(from);
                    new.on_data(from);
                }
                _ => {
                    let retry = event != 5;
                    assert_eq!(
                        new.for_initiation(retry),
                        old.for_initiation(retry),
                        "initiation, sequence {sequence}: {log:?}"
                    );
                }
            }
            assert_eq!(new.active(), old.active(), "active, sequence {sequence}: {log:?}");
            assert_eq!(new.direct(), old.direct(), "direct, sequence {sequence}: {log:?}");
            assert_eq!(new.relay(), old.relay(), "relay, sequence {sequence}: {log:?}");
        }
    }
}
