//! Who a relay forwards for: frames (`0x81 | destination key | inner datagram`) from the endpoint of
//! an authorized member to the endpoint of another authorized member of the same network, and
//! nothing else, so the relay is not an open reflector.
//!
//! The relay reads only the destination key; the inner datagram is a WireGuard message between the
//! two members (or a sealed envelope), which the relay cannot open. The table is built by the
//! controller from the endpoints members' authenticated control messages came from, and published
//! to the receive thread by pointer swap.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::sys::udp::canonical;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayTable {
    /// Destination key -> (endpoint, networks it is an authorized member of).
    by_key: HashMap<[u8; 32], (SocketAddr, Vec<u32>)>,
    /// Source endpoint -> networks of the authorized member seen there.
    by_endpoint: HashMap<SocketAddr, Vec<u32>>,
}

impl RelayTable {
    /// Adds an authorized member of network `network` (any small number that names the network),
    /// seen at `endpoint`.
    pub fn insert(&mut self, key: [u8; 32], endpoint: SocketAddr, network: u32) {
        let endpoint = canonical(endpoint);
        let entry = self.by_key.entry(key).or_insert((endpoint, Vec::new()));
        entry.0 = endpoint;
        if !entry.1.contains(&network) {
            entry.1.push(network);
        }
        let nets = self.by_endpoint.entry(endpoint).or_default();
        if !nets.contains(&network) {
            nets.push(network);
        }
    }

    /// Where a frame from `from` for `destination` goes, if anywhere.
    pub fn forward(&self, from: SocketAddr, destination: &[u8; 32]) -> Option<SocketAddr> {
        let source_nets = self.by_endpoint.get(&canonical(from))?;
        let (to, dest_nets) = self.by_key.get(destination)?;
        if *to == canonical(from) {
            // Back where it came from: useless, and a loop if two relays disagree.
            return None;
        }
        dest_nets.iter().any(|n| source_nets.contains(n)).then_some(*to)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwards_only_between_members_of_one_network() {
        let mut t = RelayTable::default();
        t.insert([1; 32], addr("192.0.2.1:1000"), 0);
        t.insert([2; 32], addr("192.0.2.2:2000"), 0);
        t.insert([3; 32], addr("192.0.2.3:3000"), 1);
        assert_eq!(
            t.forward(addr("192.0.2.1:1000"), &[2; 32]),
            Some(addr("192.0.2.2:2000"))
        );
        assert_eq!(
            t.forward(addr("192.0.2.2:2000"), &[1; 32]),
            Some(addr("192.0.2.1:1000"))
        );
        // Another network, an unknown sender, an unknown destination, back to the sender.
        assert_eq!(t.forward(addr("192.0.2.1:1000"), &[3; 32]), None);
        assert_eq!(t.forward(addr("198.51.100.9:1000"), &[2; 32]), None);
        assert_eq!(t.forward(addr("192.0.2.1:1000"), &[9; 32]), None);
        assert_eq!(t.forward(addr("192.0.2.1:1000"), &[1; 32]), None);
    }

    #[test]
    fn v4_mapped_sources_match_plain_v4() {
        let mut t = RelayTable::default();
        t.insert([1; 32], addr("192.0.2.1:1000"), 0);
        t.insert([2; 32], addr("[::ffff:192.0.2.2]:2000"), 0);
        assert_eq!(
            t.forward(addr("[::ffff:192.0.2.1]:1000"), &[2; 32]),
            Some(addr("192.0.2.2:2000"))
        );
    }
}
