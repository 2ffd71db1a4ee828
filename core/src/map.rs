//! The network map: what every node of a network needs to know about the others, made by the
//! controller and sent to each node in pages.
//!
//! The map is the same for every node of a network (each skips its own entry), so the controller
//! encodes it once per change and only seals it per node. It is small per member (about 80 bytes),
//! so a thousand-member map is about 80 KB: [`paginate`] cuts it into pages that each fit an
//! unfragmented datagram on any path (1280 bytes, with the envelope and the IPv6 and UDP headers), and
//! [`Assembler`] puts the pages of one version back together on the node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::message::{DecodeError, MapPageMsg};

/// Map bytes per page. With the page's own fields (~30 bytes), the envelope's counter (~10), the
/// sealed envelope (76) and IPv6 + UDP headers (48), a page stays under 1280 bytes.
pub const PAGE_DATA: usize = 1100;

/// The largest map a node accepts, in pages (`u16` index; 4096 pages is ~4.5 MB, ~50,000 members).
pub const MAX_PAGES: u16 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMap {
    pub network: String,
    /// Increases with every change; the controller draws it from its wall clock (milliseconds) so it
    /// keeps increasing across restarts.
    pub version: u64,
    pub mtu: u16,
    pub ipv4_block: (Ipv4Addr, u8),
    pub ipv6_block: Option<(Ipv6Addr, u8)>,
    /// Every authorized member, the controller's own node included.
    pub peers: Vec<MapPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPeer {
    pub key: [u8; 32],
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// Where the controller last heard from it (after any NAT).
    pub endpoint: Option<SocketAddr>,
    /// The endpoint is the node's own socket, not a NAT's: others can reach it there unasked.
    pub reachable: bool,
    /// The controller's own node, which is also the relay.
    pub controller: bool,
    /// A border router of the network: it announces the block, so traffic from the members'
    /// addresses to the rest of the Internet goes through it, and anything it forwards may carry
    /// any source address.
    pub ingress: bool,
}

impl NetworkMap {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encodes every NetworkMap")
    }

    pub fn decode(bytes: &[u8]) -> Result<NetworkMap, DecodeError> {
        let (map, rest) =
            postcard::take_from_bytes::<NetworkMap>(bytes).map_err(|e| DecodeError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError(format!(
                "{} trailing bytes after the map",
                rest.len()
            )));
        }
        Ok(map)
    }

    pub fn peer(&self, key: &[u8; 32]) -> Option<&MapPeer> {
        self.peers.iter().find(|p| &p.key == key)
    }

    /// The ingress a node other than `own` sends its Internet traffic to: the first ingress in
    /// the map (the controller orders members by address, so every node picks the same one).
    /// `None` when the network has no ingress, or when `own` is an ingress itself and so needs none.
    pub fn egress_for(&self, own: &[u8; 32]) -> Option<&MapPeer> {
        if self.peer(own).is_some_and(|p| p.ingress) {
            return None;
        }
        self.peers.iter().find(|p| p.ingress && &p.key != own)
    }
}

/// Cuts an encoded map into pages. An empty encoding still makes one (empty) page.
pub fn paginate(network: &str, version: u64, encoded: &[u8]) -> Vec<MapPageMsg> {
    let chunks: Vec<&[u8]> = if encoded.is_empty() {
        vec![&[][..]]
    } else {
        encoded.chunks(PAGE_DATA).collect()
    };
    let count = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, data)| MapPageMsg {
            network: network.to_string(),
            version,
            index: index as u16,
            count,
            data: data.to_vec(),
        })
        .collect()
}

/// Collects the pages of the newest map version offered, and yields the map once all have come.
#[derive(Debug, Default)]
pub struct Assembler {
    version: u64,
    count: u16,
    pages: BTreeMap<u16, Vec<u8>>,
}

/// What a page did.
#[derive(Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// The map is complete.
    Complete(NetworkMap),
    /// More pages to come.
    Pending,
    /// Ignored: older than the map being assembled or the one held, inconsistent, or too large.
    Ignored,
    /// All pages came but they do not decode to a map of this network and version.
    Corrupt(DecodeError),
}

impl Assembler {
    /// Feeds one page. `have` is the version of the map the node already holds; older or equal
    /// versions are ignored.
    pub fn add(&mut self, network: &str, have: u64, page: MapPageMsg) -> PageOutcome {
        if page.network != network
            || page.version <= have
            || page.count == 0
            || page.count > MAX_PAGES
            || page.index >= page.count
            || page.data.len() > PAGE_DATA
        {
            return PageOutcome::Ignored;
        }
        if page.version < self.version {
            return PageOutcome::Ignored;
        }
        if page.version > self.version {
            self.version = page.version;
            self.count = page.count;
            self.pages.clear();
        } else if page.count != self.count {
            return PageOutcome::Ignored;
        }
        self.pages.insert(page.index, page.data);
        if self.pages.len() < usize::from(self.count) {
            return PageOutcome::Pending;
        }
        let bytes: Vec<u8> = std::mem::take(&mut self.pages).into_values().flatten().collect();
        let version = self.version;
        self.count = 0;
        match NetworkMap::decode(&bytes) {
            Ok(map) if map.network == network && map.version == version => PageOutcome::Complete(map),
            Ok(_) => PageOutcome::Corrupt(DecodeError(
                "pages hold another network's or version's map".into(),
            )),
            Err(e) => PageOutcome::Corrupt(e),
        }
    }

    /// True while pages of a version are missing.
    pub fn is_pending(&self) -> bool {
        !self.pages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn map_of(n: usize, version: u64) -> NetworkMap {
        NetworkMap {
            network: "lab".into(),
            version,
            mtu: 1420,
            ipv4_block: (Ipv4Addr::new(10, 0, 0, 0), 16),
            ipv6_block: Some(("2001:db8:1::".parse().unwrap(), 64)),
            peers: (0..n)
                .map(|i| MapPeer {
                    key: {
                        let mut k = [0u8; 32];
                        k[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                        k
                    },
                    name: format!("node-{i}"),
                    ipv4: Ipv4Addr::from(0x0a00_0000 + i as u32 + 1),
                    ipv6: Some(Ipv6Addr::from(
                        0x2001_0db8_0001_0000_0000_0000_0000_0000u128 + i as u128 + 1,
                    )),
                    endpoint: Some(SocketAddr::from(([192, 0, 2, (i % 250) as u8], 51820))),
                    reachable: i % 2 == 0,
                    controller: i == 0,
                    ingress: i == 1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_thousand_member_map_goes_in_pages_and_comes_back_in_any_order() {
        let map = map_of(1000, 5);
        let encoded = map.encode();
        let mut pages = paginate("lab", 5, &encoded);
        assert!(pages.len() > 1);
        assert!(pages.iter().all(|p| p.data.len() <= PAGE_DATA));
        pages.reverse();
        let mut asm = Assembler::default();
        let last = pages.pop().unwrap();
        for page in pages {
            assert_eq!(asm.add("lab", 0, page), PageOutcome::Pending);
        }
        assert_eq!(asm.add("lab", 0, last), PageOutcome::Complete(map));
        assert!(!asm.is_pending());
    }

    #[test]
    fn a_newer_version_restarts_assembly_and_older_pages_are_ignored() {
        let old = paginate("lab", 5, &map_of(100, 5).encode());
        let new_map = map_of(100, 6);
        let new = paginate("lab", 6, &new_map.encode());
        let mut asm = Assembler::default();
        assert_eq!(asm.add("lab", 0, old[0].clone()), PageOutcome::Pending);
        let mut outcome = PageOutcome::Pending;
        for (i, page) in new.into_iter().enumerate() {
            outcome = asm.add("lab", 0, page);
            if i == 0 {
                assert_eq!(asm.add("lab", 0, old[1].clone()), PageOutcome::Ignored);
            }
        }
        assert_eq!(outcome, PageOutcome::Complete(new_map));
    }

    #[test]
    fn pages_for_a_held_version_another_network_or_out_of_range_are_ignored() {
        let pages = paginate("lab", 5, &map_of(3, 5).encode());
        let mut asm = Assembler::default();
        assert_eq!(asm.add("lab", 5, pages[0].clone()), PageOutcome::Ignored);
        assert_eq!(asm.add("other", 0, pages[0].clone()), PageOutcome::Ignored);
        let mut bad = pages[0].clone();
        bad.index = bad.count;
        assert_eq!(asm.add("lab", 0, bad), PageOutcome::Ignored);
    }

    #[test]
    fn pages_that_do_not_decode_are_reported() {
        let mut asm = Assembler::default();
        let page = MapPageMsg {
            network: "lab".into(),
            version: 1,
            index: 0,
            count: 1,
            data: vec![0xff; 10],
        };
        assert!(matches!(asm.add("lab", 0, page), PageOutcome::Corrupt(_)));
    }
}
