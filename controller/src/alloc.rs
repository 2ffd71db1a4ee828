//! Address assignment from a network's blocks.
//!
//! Pure: the caller passes the addresses already in use (from the store, inside the transaction that
//! will record the new member), and gets back the address to give out. Nothing here remembers anything,
//! so the database stays the only truth and an assignment can never drift from what is stored.
//!
//! Policy: **the lowest free address**, counted from the start of the block. This is deterministic (the
//! same members give the same next address on every controller), keeps a small network's addresses
//! short and readable, and reuses the address of a removed member before touching new space.
//!
//! What is never handed out:
//! - in an IPv4 block of `/30` or shorter, the network address (all host bits zero) and the broadcast
//!   address (all host bits one). A `/31` has both addresses usable (RFC 3021) and a `/32` its one;
//! - in an IPv6 block, the all-zeros address, which is the Subnet-Router anycast address (RFC 4291
//!   section 2.6.1). IPv6 has no broadcast address;
//! - the first usable address of each block when the network reserves it for the controller's own node
//!   (the ZeroTier-style "the gateway is `.1`" layout the ingress node relies on).

use core::fmt;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use meshd_packet::{Ipv4Prefix, Ipv6Prefix};

/// Why no address could be given out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// Every assignable address of the IPv4 block is taken.
    V4Exhausted { block: Ipv4Prefix },
    /// Every assignable address of the IPv6 block is taken.
    V6Exhausted { block: Ipv6Prefix },
    /// The block has no address a member could get (e.g. a `/32` whose one address is the controller's).
    V4TooSmall { block: Ipv4Prefix },
    /// As [`AllocError::V4TooSmall`], for the IPv6 block.
    V6TooSmall { block: Ipv6Prefix },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::V4Exhausted { block } => write!(
                f,
                "every address of {block} is assigned; remove members that are gone \
                 (`meshd member remove`) or give the network a larger block"
            ),
            AllocError::V6Exhausted { block } => write!(
                f,
                "every address of {block} is assigned; remove members that are gone \
                 (`meshd member remove`) or give the network a larger IPv6 block"
            ),
            AllocError::V4TooSmall { block } => write!(
                f,
                "{block} leaves no address for members (network, broadcast and controller \
                 addresses are not assignable); use a shorter prefix such as /24"
            ),
            AllocError::V6TooSmall { block } => write!(
                f,
                "{block} leaves no address for members; use a shorter prefix such as /64"
            ),
        }
    }
}

impl std::error::Error for AllocError {}

/// A network's address layout: its blocks and whether the first usable addresses belong to the
/// controller's own node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    v4: Ipv4Prefix,
    v6: Option<Ipv6Prefix>,
    reserve_controller: bool,
}

impl AddressPlan {
    /// A plan, refused when a block leaves no address for a member.
    pub fn new(v4: Ipv4Prefix, v6: Option<Ipv6Prefix>, reserve_controller: bool) -> Result<Self, AllocError> {
        let plan = AddressPlan {
            v4,
            v6,
            reserve_controller,
        };
        if plan.v4_member_range().is_none() {
            return Err(AllocError::V4TooSmall { block: v4 });
        }
        if let Some(block) = v6
            && plan.v6_member_range().is_none()
        {
            return Err(AllocError::V6TooSmall { block });
        }
        Ok(plan)
    }

    pub fn v4_block(&self) -> Ipv4Prefix {
        self.v4
    }

    pub fn v6_block(&self) -> Option<Ipv6Prefix> {
        self.v6
    }

    pub fn reserves_controller(&self) -> bool {
        self.reserve_controller
    }

    /// The controller's own IPv4 address, when the plan reserves one.
    pub fn controller_v4(&self) -> Option<Ipv4Addr> {
        let (first, _) = v4_usable(self.v4)?;
        self.reserve_controller.then(|| Ipv4Addr::from_bits(first))
    }

    /// The controller's own IPv6 address, when the plan reserves one and has an IPv6 block.
    pub fn controller_v6(&self) -> Option<Ipv6Addr> {
        let (first, _) = v6_usable(self.v6?)?;
        self.reserve_controller.then(|| Ipv6Addr::from_bits(first))
    }

    /// How many members the IPv4 block can hold (the controller's reserved address not counted).
    pub fn v4_capacity(&self) -> u64 {
        self.v4_member_range()
            .map_or(0, |(lo, hi)| u64::from(hi - lo) + 1)
    }

    /// The lowest IPv4 address of the block that a member may get and that is not in `used`.
    ///
    /// `used` may hold addresses outside the block (a block that was changed, say); they are ignored.
    pub fn allocate_v4(&self, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
        let (lo, hi) = self
            .v4_member_range()
            .ok_or(AllocError::V4TooSmall { block: self.v4 })?;
        let used = used.range(Ipv4Addr::from_bits(lo)..=Ipv4Addr::from_bits(hi));
        lowest_free(
            u128::from(lo),
            u128::from(hi),
            used.map(|a| u128::from(a.to_bits())),
        )
        .map(|a| Ipv4Addr::from_bits(a as u32))
        .ok_or(AllocError::V4Exhausted { block: self.v4 })
    }

    /// The lowest IPv6 address of the block that a member may get and that is not in `used`; `None`
    /// when the network has no IPv6 block.
    pub fn allocate_v6(&self, used: &BTreeSet<Ipv6Addr>) -> Result<Option<Ipv6Addr>, AllocError> {
        let Some(block) = self.v6 else {
            return Ok(None);
        };
        let (lo, hi) = self.v6_member_range().ok_or(AllocError::V6TooSmall { block })?;
        let used = used.range(Ipv6Addr::from_bits(lo)..=Ipv6Addr::from_bits(hi));
        lowest_free(lo, hi, used.map(|a| a.to_bits()))
            .map(|a| Some(Ipv6Addr::from_bits(a)))
            .ok_or(AllocError::V6Exhausted { block })
    }

    /// Whether `addr` is one a member may hold under this plan (inside the block, not the network,
    /// broadcast or controller address). The store checks addresses it reads back with this.
    pub fn is_member_v4(&self, addr: Ipv4Addr) -> bool {
        self.v4_member_range()
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&addr.to_bits()))
    }

    /// As [`AddressPlan::is_member_v4`], for the IPv6 block.
    pub fn is_member_v6(&self, addr: Ipv6Addr) -> bool {
        self.v6_member_range()
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&addr.to_bits()))
    }

    fn v4_member_range(&self) -> Option<(u32, u32)> {
        let (first, last) = v4_usable(self.v4)?;
        if self.reserve_controller {
            (first < last).then(|| (first + 1, last))
        } else {
            Some((first, last))
        }
    }

    fn v6_member_range(&self) -> Option<(u128, u128)> {
        let (first, last) = v6_usable(self.v6?)?;
        if self.reserve_controller {
            (first < last).then(|| (first + 1, last))
        } else {
            Some((first, last))
        }
    }
}

/// The first and last usable addresses of an IPv4 block, as integers.
fn v4_usable(block: Ipv4Prefix) -> Option<(u32, u32)> {
    let base = block.addr().to_bits();
    let host_bits = 32 - u32::from(block.len());
    // `checked_shl` because a /0 has 32 host bits and `1 << 32` overflows a u32.
    let last = base | 1u32.checked_shl(host_bits).map_or(u32::MAX, |n| n - 1);
    match block.len() {
        32 | 31 => Some((base, last)),
        _ => Some((base + 1, last - 1)),
    }
}

/// The first and last usable addresses of an IPv6 block: everything but the Subnet-Router anycast
/// address (all host bits zero). A /128 has no host bits, so its one address is usable.
fn v6_usable(block: Ipv6Prefix) -> Option<(u128, u128)> {
    let base = block.addr().to_bits();
    let host_bits = 128 - u32::from(block.len());
    let last = base | 1u128.checked_shl(host_bits).map_or(u128::MAX, |n| n - 1);
    if block.len() == 128 {
        return Some((base, base));
    }
    Some((base + 1, last))
}

/// The lowest value in `lo..=hi` that is not in `used`, which must be ascending and inside `lo..=hi`.
///
/// One pass over the used addresses: the answer is the first gap, so the cost is the number of members,
/// not the size of the block (a /64 would otherwise be hopeless).
fn lowest_free(lo: u128, hi: u128, used: impl Iterator<Item = u128>) -> Option<u128> {
    let mut candidate = lo;
    for u in used {
        if u > candidate {
            break;
        }
        if u == candidate {
            if candidate == hi {
                return None;
            }
            candidate += 1;
        }
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Prefix {
        s.parse().unwrap()
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Fill a plan's IPv4 block, returning the addresses in the order they were given out.
    fn fill_v4(plan: &AddressPlan) -> (Vec<Ipv4Addr>, AllocError) {
        let mut used = BTreeSet::new();
        let mut order = Vec::new();
        loop {
            match plan.allocate_v4(&used) {
                Ok(a) => {
                    assert!(used.insert(a), "{a} handed out twice");
                    order.push(a);
                }
                Err(e) => return (order, e),
            }
        }
    }

    #[test]
    fn a_slash_24_gives_1_to_254_in_order() {
        let plan = AddressPlan::new(v4("10.7.0.0/24"), None, false).unwrap();
        let (order, err) = fill_v4(&plan);
        let want: Vec<Ipv4Addr> = (1..=254).map(|h| Ipv4Addr::new(10, 7, 0, h)).collect();
        assert_eq!(order, want);
        assert_eq!(
            err,
            AllocError::V4Exhausted {
                block: v4("10.7.0.0/24")
            }
        );
        assert_eq!(plan.v4_capacity(), 254);
    }

    #[test]
    fn the_controller_reservation_takes_the_first_usable_address() {
        let plan = AddressPlan::new(v4("44.30.127.0/24"), Some(v6("fd00:44::/64")), true).unwrap();
        assert_eq!(plan.controller_v4(), Some(ip4("44.30.127.1")));
        assert_eq!(plan.controller_v6(), Some("fd00:44::1".parse().unwrap()));
        assert_eq!(plan.allocate_v4(&BTreeSet::new()), Ok(ip4("44.30.127.2")));
        assert_eq!(
            plan.allocate_v6(&BTreeSet::new()),
            Ok(Some("fd00:44::2".parse().unwrap()))
        );
        assert_eq!(plan.v4_capacity(), 253);
        assert!(!plan.is_member_v4(ip4("44.30.127.1")));
    }

    #[test]
    fn a_freed_address_is_the_next_one_given_out() {
        let plan = AddressPlan::new(v4("10.0.0.0/24"), None, false).unwrap();
        let used: BTreeSet<_> = ["10.0.0.1", "10.0.0.3", "10.0.0.4"]
            .iter()
            .map(|s| ip4(s))
            .collect();
        assert_eq!(plan.allocate_v4(&used), Ok(ip4("10.0.0.2")));
        let used: BTreeSet<_> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|s| ip4(s))
            .collect();
        assert_eq!(plan.allocate_v4(&used), Ok(ip4("10.0.0.4")));
    }

    #[test]
    fn addresses_outside_the_block_do_not_count() {
        let plan = AddressPlan::new(v4("10.0.0.0/30"), None, false).unwrap();
        let used: BTreeSet<_> = ["10.0.0.0", "10.0.0.1", "10.0.0.3", "10.0.1.2"]
            .iter()
            .map(|s| ip4(s))
            .collect();
        assert_eq!(plan.allocate_v4(&used), Ok(ip4("10.0.0.2")));
    }

    #[test]
    fn tiny_blocks() {
        // /30: two usable addresses.
        let (order, _) = fill_v4(&AddressPlan::new(v4("10.0.0.4/30"), None, false).unwrap());
        assert_eq!(order, [ip4("10.0.0.5"), ip4("10.0.0.6")]);
        // /31: both usable (RFC 3021).
        let (order, _) = fill_v4(&AddressPlan::new(v4("10.0.0.4/31"), None, false).unwrap());
        assert_eq!(order, [ip4("10.0.0.4"), ip4("10.0.0.5")]);
        // /32: the one address, unless the controller has it.
        let (order, _) = fill_v4(&AddressPlan::new(v4("10.0.0.9/32"), None, false).unwrap());
        assert_eq!(order, [ip4("10.0.0.9")]);
        assert_eq!(
            AddressPlan::new(v4("10.0.0.9/32"), None, true),
            Err(AllocError::V4TooSmall {
                block: v4("10.0.0.9/32")
            })
        );
        assert_eq!(
            AddressPlan::new(v4("10.0.0.0/24"), Some(v6("fd00::5/128")), true),
            Err(AllocError::V6TooSmall {
                block: v6("fd00::5/128")
            })
        );
    }

    #[test]
    fn the_last_address_of_the_space_is_too_small_not_a_panic() {
        let top4 = v4("255.255.255.255/32");
        assert_eq!(
            AddressPlan::new(top4, None, true),
            Err(AllocError::V4TooSmall { block: top4 })
        );
        let top6 = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
        assert_eq!(
            AddressPlan::new(v4("10.0.0.0/24"), Some(top6), true),
            Err(AllocError::V6TooSmall { block: top6 })
        );
    }

    #[test]
    fn the_whole_ipv4_space_does_not_overflow() {
        let plan = AddressPlan::new(v4("0.0.0.0/0"), None, false).unwrap();
        assert_eq!(plan.v4_capacity(), (1u64 << 32) - 2);
        assert_eq!(plan.allocate_v4(&BTreeSet::new()), Ok(ip4("0.0.0.1")));
        let plan = AddressPlan::new(v4("0.0.0.0/0"), Some(v6("::/0")), false).unwrap();
        assert_eq!(
            plan.allocate_v6(&BTreeSet::new()),
            Ok(Some("::1".parse().unwrap()))
        );
    }

    #[test]
    fn ipv6_skips_the_anycast_address_and_ends_at_all_ones() {
        let plan = AddressPlan::new(v4("10.0.0.0/24"), Some(v6("fd00::/126")), false).unwrap();
        let mut used = BTreeSet::new();
        let mut order = Vec::new();
        while let Ok(Some(a)) = plan.allocate_v6(&used) {
            used.insert(a);
            order.push(a);
        }
        let want: Vec<Ipv6Addr> = ["fd00::1", "fd00::2", "fd00::3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(order, want);
        assert_eq!(
            plan.allocate_v6(&used),
            Err(AllocError::V6Exhausted {
                block: v6("fd00::/126")
            })
        );
        let no_v6 = AddressPlan::new(v4("10.0.0.0/24"), None, true).unwrap();
        assert_eq!(no_v6.allocate_v6(&BTreeSet::new()), Ok(None));
        assert_eq!(no_v6.controller_v6(), None);
    }

    #[test]
    fn the_exhaustion_message_says_what_to_do() {
        let msg = AllocError::V4Exhausted {
            block: v4("10.0.0.0/30"),
        }
        .to_string();
        assert!(msg.contains("10.0.0.0/30"), "{msg}");
        assert!(msg.contains("meshd member remove"), "{msg}");
    }

    proptest! {
        /// Any block, any reservation, any history of allocations and frees: every address given out
        /// is inside the block, is neither the network nor the broadcast address nor the controller's,
        /// is not held by anyone else, and is the lowest such address (checked against a linear scan).
        #[test]
        fn allocations_are_unique_inside_and_lowest(
            base in any::<u32>(),
            len in 22u8..=32,
            reserve in any::<bool>(),
            ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..300),
        ) {
            let block = Ipv4Prefix::new(Ipv4Addr::from_bits(base), len).unwrap();
            let Ok(plan) = AddressPlan::new(block, None, reserve) else {
                prop_assert!(len == 32 && reserve);
                return Ok(());
            };
            let network = block.addr().to_bits();
            let broadcast = network | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
            for (free_one, pick) in ops {
                if free_one && !used.is_empty() {
                    let victim = *used.iter().nth(pick.index(used.len())).unwrap();
                    used.remove(&victim);
                    continue;
                }
                // The naive model: scan the block from the bottom.
                let model = (network..=broadcast)
                    .map(Ipv4Addr::from_bits)
                    .filter(|a| len >= 31 || (a.to_bits() != network && a.to_bits() != broadcast))
                    .filter(|a| Some(*a) != plan.controller_v4())
                    .find(|a| !used.contains(a));
                match plan.allocate_v4(&used) {
                    Ok(a) => {
                        prop_assert!(block.contains(a));
                        if len < 31 {
                            prop_assert_ne!(a.to_bits(), network);
                            prop_assert_ne!(a.to_bits(), broadcast);
                        }
                        prop_assert_ne!(Some(a), plan.controller_v4());
                        prop_assert!(plan.is_member_v4(a));
                        prop_assert_eq!(Some(a), model);
                        prop_assert!(used.insert(a), "{} handed out twice", a);
                    }
                    Err(e) => {
                        prop_assert_eq!(model, None);
                        prop_assert_eq!(e, AllocError::V4Exhausted { block });
                    }
                }
            }
        }

        /// The same for IPv6 blocks, with the model working on offsets from the block start.
        #[test]
        fn ipv6_allocations_are_unique_inside_and_lowest(
            base in any::<u128>(),
            len in 118u8..=128,
            reserve in any::<bool>(),
            n in 1usize..200,
        ) {
            let block = Ipv6Prefix::new(Ipv6Addr::from_bits(base), len).unwrap();
            let Ok(plan) = AddressPlan::new(v4("10.0.0.0/8"), Some(block), reserve) else {
                prop_assert!(len >= 127 && reserve);
                return Ok(());
            };
            let mut used = BTreeSet::new();
            for _ in 0..n {
                match plan.allocate_v6(&used) {
                    Ok(Some(a)) => {
                        prop_assert!(block.contains(a));
                        if len < 128 {
                            prop_assert_ne!(a, block.addr());
                        }
                        prop_assert_ne!(Some(a), plan.controller_v6());
                        prop_assert!(used.insert(a));
                    }
                    Ok(None) => prop_assert!(false, "a plan with a v6 block gave no v6 address"),
                    Err(_) => {
                        let size = 1u128 << (128 - len);
                        let reserved = u128::from(len < 128) + u128::from(reserve);
                        prop_assert_eq!(used.len() as u128, size - reserved);
                        break;
                    }
                }
            }
        }
    }
}
