//! `PrefixMap<V>`: longest-prefix match over IPv4 and IPv6 prefixes.
//!
//! The structure is a multibit trie with a stride of one octet, compressed with bitmaps (the
//! allotment layout of Hariguchi's ART, stored popcount-compressed as in Tree Bitmap), plus leaves:
//!
//! - A node at depth `d` has been reached through the first `d` octets of the key. It stores the
//!   prefixes whose length lies in `8d+1 ..= 8d+8` (the root also stores `/0`). A prefix with `l` bits
//!   inside the node sits at heap index `2^l + (octet >> (8 - l))`: index 1 is the root's `/0`, 2..=3
//!   a node's `/1`s, 256..=511 its full-octet prefixes. A 512-bit map says which indices are present;
//!   their values sit in one contiguous block, in index order, found by counting set bits.
//! - A 256-bit map says which octets lead further down. The children of a node also sit in one
//!   contiguous block, so stepping down is one popcount and one load, with no pointer to chase in
//!   between. A child whose subtree holds a single prefix is a *leaf* carrying that prefix, so a lone
//!   host route costs one node instead of a chain of them (an IPv6 `/128` would otherwise need 16).
//!
//! A lookup walks down while a child exists (at most 4 nodes for IPv4, 16 for IPv6). A leaf that
//! contains the address is the answer, as nothing below it exists; otherwise the walk goes back up and
//! the first node holding a prefix that contains the address wins. Inside a node the candidates for
//! an octet are its 9 heap ancestors, which sit in known words of the map: four word tests, no loop.
//!
//! Insert and remove touch one path, plus a shift or copy of one block of at most 256 children or 511
//! values. Removal restores the compact shape (empty nodes freed, single-prefix subtrees turned back
//! into leaves), so the shape depends on the contents, not on the history of updates.
//!
//! Why not the path-compressed binary trie of Linux `allowedips.c`: one bit per level means about
//! log2(100,000) = 17 dependent loads per lookup at 100,000 random prefixes, against at most 4 here. Why not a direct-indexed
//! `DIR-24-8` table: 64 MiB per family before the first route, and slow, wide updates.
//!
//! Nodes and values live in two arenas of power-of-two blocks addressed by `u32`, so the structure
//! holds no pointers, clones as a flat copy, and reuses freed blocks.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

/// A map from IP prefixes to values with longest-prefix-match lookup. IPv4 and IPv6 are independent:
/// an address only ever matches prefixes of its own family.
///
/// | operation | cost |
/// |---|---|
/// | [`lookup`](Self::lookup), [`get`](Self::get) | at most 4 (IPv4) or 16 (IPv6) node visits, no allocation |
/// | [`insert`](Self::insert), [`remove`](Self::remove) | one path, plus moving one block of a node's entries |
/// | [`iter`](Self::iter) | ascending [`IpPrefix`] order: IPv4 first, then by address, then by length |
#[derive(Clone)]
pub struct PrefixMap<V> {
    v4: Trie<V, 4>,
    v6: Trie<V, 16>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// An IPv4 address as a trie key: left-aligned in 128 bits, like an IPv6 one.
#[inline]
fn v4_key(addr: Ipv4Addr) -> u128 {
    u128::from(addr.to_bits()) << 96
}

fn v4_prefix(key: u128, len: u8) -> Option<IpPrefix> {
    Ipv4Prefix::new(Ipv4Addr::from_bits((key >> 96) as u32), len)
        .ok()
        .map(IpPrefix::V4)
}

fn v6_prefix(key: u128, len: u8) -> Option<IpPrefix> {
    Ipv6Prefix::new(Ipv6Addr::from_bits(key), len)
        .ok()
        .map(IpPrefix::V6)
}

impl<V> PrefixMap<V> {
    pub fn new() -> Self {
        PrefixMap {
            v4: Trie::new(),
            v6: Trie::new(),
        }
    }

    /// The number of prefixes stored, both families together.
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.v4 = Trie::new();
        self.v6 = Trie::new();
    }

    /// Stores `value` under exactly `prefix`, returning the value it replaces.
    pub fn insert(&mut self, prefix: IpPrefix, value: V) -> Option<V> {
        match prefix {
            IpPrefix::V4(p) => self.v4.insert(v4_key(p.addr()), p.len(), value),
            IpPrefix::V6(p) => self.v6.insert(p.addr().to_bits(), p.len(), value),
        }
    }

    /// Removes exactly `prefix` (not the prefixes it covers), returning its value.
    pub fn remove(&mut self, prefix: IpPrefix) -> Option<V> {
        match prefix {
            IpPrefix::V4(p) => self.v4.remove(v4_key(p.addr()), p.len()),
            IpPrefix::V6(p) => self.v6.remove(p.addr().to_bits(), p.len()),
        }
    }

    /// The value stored under exactly `prefix`.
    pub fn get(&self, prefix: IpPrefix) -> Option<&V> {
        match prefix {
            IpPrefix::V4(p) => self.v4.get(v4_key(p.addr()), p.len()),
            IpPrefix::V6(p) => self.v6.get(p.addr().to_bits(), p.len()),
        }
    }

    pub fn get_mut(&mut self, prefix: IpPrefix) -> Option<&mut V> {
        match prefix {
            IpPrefix::V4(p) => self.v4.get_mut(v4_key(p.addr()), p.len()),
            IpPrefix::V6(p) => self.v6.get_mut(p.addr().to_bits(), p.len()),
        }
    }

    pub fn contains_key(&self, prefix: IpPrefix) -> bool {
        self.get(prefix).is_some()
    }

    /// The value of the longest stored prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&V> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<&V> {
        self.v4.lookup(v4_key(addr)).map(|(_, v)| v)
    }

    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<&V> {
        self.v6.lookup(addr.to_bits()).map(|(_, v)| v)
    }

    /// Like [`lookup`](Self::lookup), but also says which prefix matched.
    pub fn longest_match(&self, addr: IpAddr) -> Option<(IpPrefix, &V)> {
        match addr {
            IpAddr::V4(a) => {
                let key = v4_key(a);
                let (len, v) = self.v4.lookup(key)?;
                Some((v4_prefix(key, len)?, v))
            }
            IpAddr::V6(a) => {
                let key = a.to_bits();
                let (len, v) = self.v6.lookup(key)?;
                Some((v6_prefix(key, len)?, v))
            }
        }
    }

    /// Every entry in ascending [`IpPrefix`] order: IPv4 before IPv6, then by address, then by length.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            v4: TrieIter::new(&self.v4),
            v6: TrieIter::new(&self.v6),
            remaining: self.len(),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for PrefixMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> FromIterator<(IpPrefix, V)> for PrefixMap<V> {
    fn from_iter<I: IntoIterator<Item = (IpPrefix, V)>>(iter: I) -> Self {
        let mut map = PrefixMap::new();
        map.extend(iter);
        map
    }
}

impl<V> Extend<(IpPrefix, V)> for PrefixMap<V> {
    fn extend<I: IntoIterator<Item = (IpPrefix, V)>>(&mut self, iter: I) {
        for (prefix, value) in iter {
            self.insert(prefix, value);
        }
    }
}

impl<'a, V> IntoIterator for &'a PrefixMap<V> {
    type Item = (IpPrefix, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`PrefixMap`], see [`PrefixMap::iter`].
pub struct Iter<'a, V> {
    v4: TrieIter<'a, V, 4>,
    v6: TrieIter<'a, V, 16>,
    remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (IpPrefix, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let item = if let Some((key, len, v)) = self.v4.next() {
            (v4_prefix(key, len)?, v)
        } else {
            let (key, len, v) = self.v6.next()?;
            (v6_prefix(key, len)?, v)
        };
        self.remaining = self.remaining.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

/// The `len` leading bits of a key.
#[inline]
fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Octet `depth` of a key. A rotation rather than a shift, so no depth can overflow.
#[inline]
fn octet(key: u128, depth: usize) -> u8 {
    key.rotate_left(8 * (depth as u32 + 1)) as u8
}

/// `octet` placed at position `depth` of an otherwise zero key.
fn at_octet(octet: u8, depth: usize) -> u128 {
    u128::from(octet).rotate_right(8 * (depth as u32 + 1))
}

/// A fixed-width bitmap of `64 * W` bits.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Bits<const W: usize>([u64; W]);

impl<const W: usize> Bits<W> {
    const EMPTY: Self = Bits([0; W]);

    // `W` is a power of two, so `% W` is a mask the compiler can see through: no bounds check and no
    // panic path, even though every caller already stays below `64 * W`.
    #[inline]
    fn word(&self, i: usize) -> u64 {
        self.0[(i >> 6) % W]
    }

    #[inline]
    fn test(&self, i: usize) -> bool {
        self.word(i) >> (i & 63) & 1 != 0
    }

    fn set(&mut self, i: usize) {
        self.0[(i >> 6) % W] |= 1 << (i & 63);
    }

    fn clear(&mut self, i: usize) {
        self.0[(i >> 6) % W] &= !(1 << (i & 63));
    }

    /// The number of set bits below `i` within its own word.
    #[inline]
    fn rank_in_word(&self, i: usize) -> usize {
        (self.word(i) & ((1u64 << (i & 63)) - 1)).count_ones() as usize
    }

    /// The number of set bits below `i`: the position of entry `i` in its dense block.
    #[inline]
    fn rank(&self, i: usize) -> usize {
        let words = &self.0[..(i >> 6) % W];
        words.iter().map(|w| w.count_ones() as usize).sum::<usize>() + self.rank_in_word(i)
    }

    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            core::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// For each octet, the heap indices of its ancestors with 0 to 5 bits, all of which fall in word 0.
const LOW_ANCESTORS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut octet = 0;
    while octet < 256 {
        let mut l = 0;
        while l <= 5 {
            table[octet] |= 1 << ((1 << l) | (octet >> (8 - l)));
            l += 1;
        }
        octet += 1;
    }
    table
};

/// The heap index of a prefix with `l` bits (0..=8) inside a node, whose first bits are `octet`'s.
#[inline]
fn heap_index(octet: u8, l: u8) -> usize {
    (1usize << l) | (usize::from(octet) >> (8 - l))
}

/// Inverse of [`heap_index`]: the local length and the octet with the prefix bits left-aligned.
fn split_heap_index(idx: usize) -> (u8, u8) {
    let l = (usize::BITS - 1 - idx.leading_zeros()) as u8;
    let bits = (idx ^ (1 << l)) << (8 - l);
    (l, bits as u8)
}

/// The depth of the node that holds a prefix of `len` bits, and its heap index there.
fn place(key: u128, len: u8) -> (usize, usize) {
    if len == 0 {
        return (0, 1);
    }
    let depth = usize::from(len - 1) / 8;
    let l = len - (depth * 8) as u8;
    (depth, heap_index(octet(key, depth), l))
}

/// Arena of items in power-of-two blocks. A node's children form one block, as do its values, so a
/// node refers to each with a single base index.
#[derive(Clone)]
struct Blocks<T> {
    items: Vec<T>,
    /// Free block bases, by `log2` of the block size (1 to 512).
    free: [Vec<u32>; 10],
}

/// The block size holding `count` items.
fn capacity(count: usize) -> usize {
    count.next_power_of_two()
}

impl<T: Default> Blocks<T> {
    fn new() -> Self {
        Blocks {
            items: Vec::new(),
            free: Default::default(),
        }
    }

    fn alloc(&mut self, cap: usize) -> u32 {
        let class = cap.trailing_zeros() as usize % 10;
        if let Some(base) = self.free[class].pop() {
            return base;
        }
        let base = self.items.len();
        self.items.resize_with(base + cap, T::default);
        base as u32
    }

    fn release(&mut self, base: u32, cap: usize) {
        let base = base as usize;
        for item in &mut self.items[base..base + cap] {
            *item = T::default();
        }
        self.free[cap.trailing_zeros() as usize % 10].push(base as u32);
    }

    /// Inserts `item` at position `at` of the block at `base` that holds `count` items, and returns
    /// the block's base, which moves when the block is full.
    fn insert(&mut self, base: u32, count: usize, at: usize, item: T) -> u32 {
        if count == 0 {
            let new = self.alloc(1);
            self.items[new as usize] = item;
            return new;
        }
        let (b, cap) = (base as usize, capacity(count));
        if count < cap {
            self.items[b + at..=b + count].rotate_right(1);
            self.items[b + at] = item;
            return base;
        }
        let new = self.alloc(cap * 2);
        let n = new as usize;
        for i in 0..count {
            let moved = core::mem::take(&mut self.items[b + i]);
            self.items[n + i + usize::from(i >= at)] = moved;
        }
        self.items[n + at] = item;
        self.release(base, cap);
        new
    }

    /// Removes position `at` of the block at `base` that holds `count` items; returns the block's new
    /// base (meaningless once it is empty) and the item. A block shrinks when half of it would do.
    fn remove(&mut self, base: u32, count: usize, at: usize) -> (u32, T) {
        let b = base as usize;
        let item = core::mem::take(&mut self.items[b + at]);
        self.items[b + at..b + count].rotate_left(1);
        let left = count - 1;
        let (cap, new_cap) = (capacity(count), capacity(left));
        if left == 0 {
            self.release(base, cap);
            return (0, item);
        }
        if new_cap == cap {
            return (base, item);
        }
        let new = self.alloc(new_cap);
        for i in 0..left {
            self.items[new as usize + i] = core::mem::take(&mut self.items[b + i]);
        }
        self.release(base, cap);
        (new, item)
    }
}

/// Marks an inner node in [`Node::leaf_len`].
const INNER: u8 = u8::MAX;

/// One trie node, or a leaf standing for a subtree that holds a single prefix.
///
/// The first cache line holds all a descent reads (child map, child block, leaf prefix); the
/// prefix map, read only on the way back up, is the second.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Node {
    children: Bits<4>,
    /// For a leaf, its prefix (host bits zero); unused in an inner node.
    leaf_key: u128,
    child_base: u32,
    value_base: u32,
    /// Children in the words before word `i` of `children`, so a child's position is one popcount.
    child_rank: [u8; 4],
    /// The leaf's prefix length, or [`INNER`].
    leaf_len: u8,
    prefixes: Bits<8>,
}

const _: () = assert!(size_of::<Node>() == 128);

impl Default for Node {
    fn default() -> Self {
        Node::EMPTY
    }
}

impl Node {
    const EMPTY: Node = Node {
        children: Bits::EMPTY,
        leaf_key: 0,
        child_base: 0,
        value_base: 0,
        child_rank: [0; 4],
        leaf_len: INNER,
        prefixes: Bits::EMPTY,
    };

    fn leaf(key: u128, len: u8, value_base: u32) -> Node {
        Node {
            leaf_key: key,
            leaf_len: len,
            value_base,
            ..Node::EMPTY
        }
    }

    #[inline]
    fn is_leaf(&self) -> bool {
        self.leaf_len != INNER
    }

    #[inline]
    fn leaf_contains(&self, key: u128) -> bool {
        (key ^ self.leaf_key) & mask(self.leaf_len) == 0
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        !self.is_leaf() && self.children.count() == 0 && self.prefixes.count() == 0
    }

    /// The arena index of the child under `octet`.
    #[inline]
    fn child(&self, octet: u8) -> Option<usize> {
        let o = usize::from(octet);
        if !self.children.test(o) {
            return None;
        }
        let before = usize::from(self.child_rank[(o >> 6) % 4]);
        Some(self.child_base as usize + before + self.children.rank_in_word(o))
    }

    fn update_child_rank(&mut self) {
        let mut total = 0u32;
        for (rank, word) in self.child_rank.iter_mut().zip(self.children.0) {
            // At most 192 children precede the last word, so the count fits.
            *rank = total as u8;
            total += word.count_ones();
        }
    }

    /// The heap index of the longest prefix in this node containing `octet`.
    #[inline]
    fn best_match(&self, octet: u8) -> Option<usize> {
        let o = usize::from(octet);
        let full = 256 | o;
        if self.prefixes.test(full) {
            return Some(full);
        }
        let seven = 128 | (o >> 1);
        if self.prefixes.test(seven) {
            return Some(seven);
        }
        let six = 64 | (o >> 2);
        if self.prefixes.test(six) {
            return Some(six);
        }
        let low = self.prefixes.0[0] & LOW_ANCESTORS[o];
        (low != 0).then(|| 63 - low.leading_zeros() as usize)
    }

    /// The value-arena index of the prefix at heap index `idx`.
    fn value_slot(&self, idx: usize) -> Option<usize> {
        self.prefixes
            .test(idx)
            .then(|| self.value_base as usize + self.prefixes.rank(idx))
    }
}

/// The node id of the root: the first block ever allocated.
const ROOT: usize = 0;

/// One address family: keys of `N` octets (left-aligned in a `u128`), one trie level per octet.
#[derive(Clone)]
struct Trie<V, const N: usize> {
    nodes: Blocks<Node>,
    values: Blocks<Option<V>>,
    len: usize,
}

impl<V, const N: usize> Trie<V, N> {
    fn new() -> Self {
        let mut nodes = Blocks::new();
        nodes.alloc(1);
        Trie {
            nodes,
            values: Blocks::new(),
            len: 0,
        }
    }

    #[inline]
    fn node(&self, id: usize) -> &Node {
        &self.nodes.items[id]
    }

    fn node_mut(&mut self, id: usize) -> &mut Node {
        &mut self.nodes.items[id]
    }

    /// Stores `value` in a block of its own: the value of a new leaf.
    fn alloc_value(&mut self, value: V) -> u32 {
        let base = self.values.alloc(1);
        self.values.items[base as usize] = Some(value);
        base
    }

    fn add_child(&mut self, parent: usize, octet: u8, child: Node) {
        let p = *self.node(parent);
        let o = usize::from(octet);
        let at = p.children.rank(o);
        let base = self.nodes.insert(p.child_base, p.children.count(), at, child);
        let p = self.node_mut(parent);
        p.child_base = base;
        p.children.set(o);
        p.update_child_rank();
    }

    fn remove_child(&mut self, parent: usize, octet: u8) -> Node {
        let p = *self.node(parent);
        let o = usize::from(octet);
        let (base, child) = self
            .nodes
            .remove(p.child_base, p.children.count(), p.children.rank(o));
        let p = self.node_mut(parent);
        p.child_base = base;
        p.children.clear(o);
        p.update_child_rank();
        child
    }

    /// Adds the prefix at heap index `idx` to node `id`, whose value block has room made for it.
    fn add_value(&mut self, id: usize, idx: usize, value: V) {
        let n = *self.node(id);
        let base = self.values.insert(
            n.value_base,
            n.prefixes.count(),
            n.prefixes.rank(idx),
            Some(value),
        );
        let n = self.node_mut(id);
        n.value_base = base;
        n.prefixes.set(idx);
    }

    fn insert(&mut self, key: u128, len: u8, value: V) -> Option<V> {
        let key = key & mask(len);
        let (target, idx) = place(key, len);
        let mut id = ROOT;
        for depth in 0..target {
            let o = octet(key, depth);
            let Some(child) = self.node(id).child(o) else {
                // Nothing below this octet yet: the new prefix is the whole subtree.
                let value_base = self.alloc_value(value);
                self.add_child(id, o, Node::leaf(key, len, value_base));
                self.len += 1;
                return None;
            };
            let c = *self.node(child);
            if c.is_leaf() {
                if c.leaf_key == key && c.leaf_len == len {
                    let slot = &mut self.values.items[c.value_base as usize];
                    return slot.replace(value);
                }
                // A second prefix in the leaf's subtree: the leaf becomes an inner node and its
                // prefix moves one level down, into that node or into a leaf under it.
                *self.node_mut(child) = Node::EMPTY;
                let (old_target, old_idx) = place(c.leaf_key, c.leaf_len);
                if old_target == depth + 1 {
                    let n = self.node_mut(child);
                    n.value_base = c.value_base;
                    n.prefixes.set(old_idx);
                } else {
                    let leaf = Node::leaf(c.leaf_key, c.leaf_len, c.value_base);
                    self.add_child(child, octet(c.leaf_key, depth + 1), leaf);
                }
            }
            id = child;
        }
        if let Some(slot) = self.node(id).value_slot(idx) {
            return self.values.items[slot].replace(value);
        }
        self.add_value(id, idx, value);
        self.len += 1;
        None
    }

    fn remove(&mut self, key: u128, len: u8) -> Option<V> {
        let key = key & mask(len);
        let (target, idx) = place(key, len);
        let mut path = [ROOT; N];
        let mut id = ROOT;
        for depth in 0..target {
            path[depth] = id;
            let o = octet(key, depth);
            let child = self.node(id).child(o)?;
            let c = *self.node(child);
            if c.is_leaf() {
                if c.leaf_key != key || c.leaf_len != len {
                    return None;
                }
                let (_, value) = self.values.remove(c.value_base, 1, 0);
                self.remove_child(id, o);
                self.len -= 1;
                self.compact(&path, depth, key);
                return value;
            }
            id = child;
        }
        path[target] = id;
        let n = *self.node(id);
        if !n.prefixes.test(idx) {
            return None;
        }
        let (base, value) = self
            .values
            .remove(n.value_base, n.prefixes.count(), n.prefixes.rank(idx));
        let n = self.node_mut(id);
        n.value_base = base;
        n.prefixes.clear(idx);
        self.len -= 1;
        self.compact(&path, target, key);
        value
    }

    /// Restores the compact shape on `key`'s path from `depth` up after a removal: a non-root node
    /// left empty is freed, one left with a single prefix becomes a leaf, and one left with only a
    /// leaf below it is replaced by that leaf.
    fn compact(&mut self, path: &[usize; N], depth: usize, key: u128) {
        for d in (1..=depth).rev() {
            let (id, parent) = (path[d], path[d - 1]);
            let n = *self.node(id);
            let (prefixes, children) = (n.prefixes.count(), n.children.count());
            if prefixes == 0 && children == 0 {
                self.remove_child(parent, octet(key, d - 1));
            } else if prefixes == 1 && children == 0 {
                let Some(idx) = n.prefixes.ones().next() else {
                    return;
                };
                let (l, bits) = split_heap_index(idx);
                let leaf_key = key & mask((d * 8) as u8) | at_octet(bits, d);
                *self.node_mut(id) = Node::leaf(leaf_key, (d * 8) as u8 + l, n.value_base);
            } else if prefixes == 0 && children == 1 && self.node(n.child_base as usize).is_leaf() {
                let leaf = *self.node(n.child_base as usize);
                self.nodes.release(n.child_base, 1);
                *self.node_mut(id) = leaf;
            } else {
                return;
            }
        }
    }

    /// The value-arena index of exactly `key/len`.
    fn find(&self, key: u128, len: u8) -> Option<usize> {
        let key = key & mask(len);
        let (target, idx) = place(key, len);
        let mut id = ROOT;
        for depth in 0..target {
            id = self.node(id).child(octet(key, depth))?;
            let c = self.node(id);
            if c.is_leaf() {
                return (c.leaf_key == key && c.leaf_len == len).then_some(c.value_base as usize);
            }
        }
        self.node(id).value_slot(idx)
    }

    fn get(&self, key: u128, len: u8) -> Option<&V> {
        self.values.items.get(self.find(key, len)?)?.as_ref()
    }

    fn get_mut(&mut self, key: u128, len: u8) -> Option<&mut V> {
        let slot = self.find(key, len)?;
        self.values.items.get_mut(slot)?.as_mut()
    }

    /// The longest match for `key`: its prefix length and value.
    #[inline]
    fn lookup(&self, key: u128) -> Option<(u8, &V)> {
        // Descend first and test on the way back up: the deepest node with a match wins, and most
        // lookups find it in the last node visited, so upper nodes are rarely tested at all.
        let mut path = [ROOT; N];
        let mut depth = 0;
        let mut id = ROOT;
        loop {
            path[depth] = id;
            if depth + 1 >= N {
                break;
            }
            let Some(child) = self.node(id).child(octet(key, depth)) else {
                break;
            };
            let c = self.node(child);
            if c.is_leaf() {
                if c.leaf_contains(key) {
                    let value = self.values.items.get(c.value_base as usize)?.as_ref()?;
                    return Some((c.leaf_len, value));
                }
                break;
            }
            id = child;
            depth += 1;
        }
        for d in (0..=depth).rev() {
            let n = self.node(path[d]);
            if let Some(idx) = n.best_match(octet(key, d)) {
                let slot = n.value_base as usize + n.prefixes.rank(idx);
                let value = self.values.items.get(slot)?.as_ref()?;
                return Some(((d * 8) as u8 + split_heap_index(idx).0, value));
            }
        }
        None
    }
}

/// Depth-first walk in ascending prefix order, one sorted frame per node on the current path.
struct TrieIter<'a, V, const N: usize> {
    trie: &'a Trie<V, N>,
    stack: Vec<Frame>,
}

struct Frame {
    id: usize,
    depth: usize,
    key: u128,
    /// Sort keys `octet << 4 | kind`: `kind` 0..=8 is a prefix of that many bits starting at `octet`,
    /// `CHILD` the subtree below `octet`. A prefix orders before any longer prefix with the same
    /// address, and everything below `octet` shares its first bits, so this order is prefix order.
    items: Vec<u16>,
    pos: usize,
}

const CHILD: u16 = 9;

impl<'a, V, const N: usize> TrieIter<'a, V, N> {
    fn new(trie: &'a Trie<V, N>) -> Self {
        let mut iter = TrieIter {
            trie,
            stack: Vec::new(),
        };
        iter.push(ROOT, 0, 0);
        iter
    }

    fn push(&mut self, id: usize, depth: usize, key: u128) {
        let node = self.trie.node(id);
        let mut items: Vec<u16> = node
            .prefixes
            .ones()
            .map(|idx| {
                let (l, octet) = split_heap_index(idx);
                u16::from(octet) << 4 | u16::from(l)
            })
            .chain(node.children.ones().map(|o| (o as u16) << 4 | CHILD))
            .collect();
        items.sort_unstable();
        self.stack.push(Frame {
            id,
            depth,
            key,
            items,
            pos: 0,
        });
    }

    fn value(&self, slot: usize) -> Option<&'a V> {
        self.trie.values.items.get(slot)?.as_ref()
    }
}

impl<'a, V, const N: usize> Iterator for TrieIter<'a, V, N> {
    type Item = (u128, u8, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let frame = self.stack.last_mut()?;
            let Some(&item) = frame.items.get(frame.pos) else {
                self.stack.pop();
                continue;
            };
            frame.pos += 1;
            let (id, depth) = (frame.id, frame.depth);
            let octet = (item >> 4) as u8;
            let key = frame.key | at_octet(octet, depth);
            let node = self.trie.node(id);
            if item & 15 == CHILD {
                let Some(child) = node.child(octet) else { continue };
                let c = self.trie.node(child);
                if c.is_leaf() {
                    return Some((c.leaf_key, c.leaf_len, self.value(c.value_base as usize)?));
                }
                self.push(child, depth + 1, key);
                continue;
            }
            let l = (item & 15) as u8;
            let slot = node.value_slot(heap_index(octet, l))?;
            return Some((key, (depth * 8) as u8 + l, self.value(slot)?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn map(entries: &[(&str, u32)]) -> PrefixMap<u32> {
        entries.iter().map(|&(s, v)| (p(s), v)).collect()
    }

    #[test]
    fn heap_index_round_trips() {
        for l in 0..=8u8 {
            for octet in 0..=255u8 {
                let idx = heap_index(octet, l);
                assert!((1..512).contains(&idx));
                let (back_l, back_octet) = split_heap_index(idx);
                assert_eq!(back_l, l);
                let mask = if l == 0 { 0 } else { 0xffu8 << (8 - l) };
                assert_eq!(back_octet, octet & mask);
            }
        }
    }

    #[test]
    fn low_ancestor_table_matches_heap_index() {
        for octet in 0..=255u8 {
            let want = (0..=5).fold(0u64, |m, l| m | 1 << heap_index(octet, l));
            assert_eq!(LOW_ANCESTORS[usize::from(octet)], want, "octet {octet}");
        }
    }

    #[test]
    fn empty_map_matches_nothing() {
        let m = PrefixMap::<u32>::new();
        assert_eq!(m.lookup(a("0.0.0.0")), None);
        assert_eq!(m.lookup(a("::")), None);
        assert!(m.is_empty());
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn nested_prefixes_pick_the_longest() {
        let m = map(&[
            ("10.0.0.0/8", 8),
            ("10.1.0.0/16", 16),
            ("10.1.2.0/24", 24),
            ("10.1.2.3/32", 32),
        ]);
        assert_eq!(m.lookup(a("10.1.2.3")), Some(&32));
        assert_eq!(m.lookup(a("10.1.2.4")), Some(&24));
        assert_eq!(m.lookup(a("10.1.3.0")), Some(&16));
        assert_eq!(m.lookup(a("10.2.0.0")), Some(&8));
        assert_eq!(m.lookup(a("11.0.0.0")), None);
        assert_eq!(m.lookup(a("9.255.255.255")), None);
        assert_eq!(m.longest_match(a("10.1.2.200")), Some((p("10.1.2.0/24"), &24)));
    }

    #[test]
    fn lengths_inside_an_octet() {
        let m = map(&[
            ("192.0.2.0/25", 25),
            ("192.0.2.128/26", 26),
            ("192.0.2.254/31", 31),
            ("128.0.0.0/1", 1),
            ("192.0.0.0/9", 9),
            ("192.0.0.0/17", 17),
            ("198.51.100.0/22", 22),
            ("198.48.0.0/14", 14),
            ("198.51.100.4/30", 30),
        ]);
        assert_eq!(m.lookup(a("198.51.103.255")), Some(&22));
        assert_eq!(m.lookup(a("198.51.104.0")), Some(&14));
        assert_eq!(m.lookup(a("198.51.99.255")), Some(&14));
        assert_eq!(m.lookup(a("198.52.0.0")), Some(&1));
        assert_eq!(m.lookup(a("198.51.100.7")), Some(&30));
        assert_eq!(m.lookup(a("198.51.100.8")), Some(&22));
        assert_eq!(m.lookup(a("192.0.2.127")), Some(&25));
        assert_eq!(m.lookup(a("192.0.2.128")), Some(&26));
        assert_eq!(m.lookup(a("192.0.2.191")), Some(&26));
        assert_eq!(m.lookup(a("192.0.2.192")), Some(&17));
        assert_eq!(m.lookup(a("192.0.2.253")), Some(&17));
        assert_eq!(m.lookup(a("192.0.2.254")), Some(&31));
        assert_eq!(m.lookup(a("192.0.2.255")), Some(&31));
        assert_eq!(m.lookup(a("192.0.128.0")), Some(&9));
        assert_eq!(m.lookup(a("192.127.255.255")), Some(&9));
        assert_eq!(m.lookup(a("192.128.0.0")), Some(&1));
        assert_eq!(m.lookup(a("255.255.255.255")), Some(&1));
        assert_eq!(m.lookup(a("127.255.255.255")), None);
        assert_eq!(
            m.longest_match(a("192.0.2.255")),
            Some((p("192.0.2.254/31"), &31))
        );
        assert_eq!(m.longest_match(a("192.0.200.1")), Some((p("192.0.0.0/9"), &9)));
    }

    #[test]
    fn default_route_stays_in_its_family() {
        let m = map(&[("0.0.0.0/0", 4), ("2001:db8::/32", 6)]);
        assert_eq!(m.lookup(a("203.0.113.1")), Some(&4));
        assert_eq!(m.lookup(a("255.255.255.255")), Some(&4));
        assert_eq!(m.lookup(a("2001:db8::1")), Some(&6));
        assert_eq!(m.lookup(a("2001:db9::1")), None);
        assert_eq!(m.longest_match(a("0.0.0.0")), Some((p("0.0.0.0/0"), &4)));
    }

    #[test]
    fn ipv6_depths() {
        let m = map(&[
            ("::/0", 0),
            ("2001:db8::/32", 32),
            ("2001:db8:0:1::/64", 64),
            ("2001:db8:0:1::/127", 127),
            ("2001:db8:0:1::1/128", 128),
        ]);
        assert_eq!(m.lookup(a("2001:db8:0:1::1")), Some(&128));
        assert_eq!(m.lookup(a("2001:db8:0:1::")), Some(&127));
        assert_eq!(m.lookup(a("2001:db8:0:1::2")), Some(&64));
        assert_eq!(m.lookup(a("2001:db8:0:2::1")), Some(&32));
        assert_eq!(m.lookup(a("fe80::1")), Some(&0));
        assert_eq!(m.lookup(a("10.0.0.1")), None);
        assert_eq!(
            m.longest_match(a("2001:db8:0:1::ff")),
            Some((p("2001:db8:0:1::/64"), &64))
        );
    }

    #[test]
    fn insert_replaces_and_get_is_exact() {
        let mut m = PrefixMap::new();
        assert_eq!(m.insert(p("198.51.100.0/24"), 1), None);
        assert_eq!(m.insert(p("198.51.100.0/24"), 2), Some(1));
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(p("198.51.100.0/24")), Some(&2));
        assert_eq!(
            m.get(p("198.51.100.0/25")),
            None,
            "get does not fall back to a covering prefix"
        );
        assert_eq!(m.get(p("198.51.0.0/16")), None);
        assert_eq!(
            m.get(p("198.51.100.7/24")),
            Some(&2),
            "host bits are masked by the prefix type"
        );
        *m.get_mut(p("198.51.100.0/24")).unwrap() = 3;
        assert_eq!(m.lookup(a("198.51.100.9")), Some(&3));
        assert!(m.get_mut(p("198.51.100.0/23")).is_none());
    }

    #[test]
    fn remove_falls_back_to_the_covering_prefix() {
        let mut m = map(&[("10.0.0.0/8", 8), ("10.1.0.0/16", 16), ("10.1.2.3/32", 32)]);
        assert_eq!(m.remove(p("10.1.0.0/16")), Some(16));
        assert_eq!(m.remove(p("10.1.0.0/16")), None);
        assert_eq!(m.lookup(a("10.1.9.9")), Some(&8));
        assert_eq!(m.lookup(a("10.1.2.3")), Some(&32));
        assert_eq!(m.remove(p("10.1.2.3/32")), Some(32));
        assert_eq!(m.lookup(a("10.1.2.3")), Some(&8));
        assert_eq!(
            m.remove(p("10.0.0.0/9")),
            None,
            "only the exact prefix is removed"
        );
        assert_eq!(m.len(), 1);
    }

    /// Checks every structural invariant of one trie; returns the number of live nodes.
    fn check<V, const N: usize>(t: &Trie<V, N>) -> usize {
        let mut blocks: Vec<(&str, usize, usize)> = vec![("node", ROOT, 1)];
        let mut prefixes = 0;
        let mut live = 0;
        let mut stack = vec![(ROOT, 0usize, 0u128)];
        while let Some((id, depth, key)) = stack.pop() {
            live += 1;
            let n = t.node(id);
            assert!(!n.is_leaf(), "a leaf is never walked into as a node");
            let (np, nc) = (n.prefixes.count(), n.children.count());
            if id != ROOT {
                assert!(np + nc > 0, "empty node left behind at depth {depth}");
                assert!(!(np == 1 && nc == 0), "single-prefix node not turned into a leaf");
                assert!(
                    !(np == 0 && nc == 1 && t.node(n.child_base as usize).is_leaf()),
                    "node holding only a leaf not replaced by it"
                );
            }
            assert!(!n.prefixes.test(0), "heap index 0 is never used");
            if depth > 0 {
                assert!(!n.prefixes.test(1), "only the root holds a zero-length prefix");
            }
            if depth + 1 == N {
                assert_eq!(nc, 0, "the last level has no children");
            }
            let mut want = *n;
            want.update_child_rank();
            assert_eq!(want.child_rank, n.child_rank);
            if np > 0 {
                blocks.push(("value", n.value_base as usize, capacity(np)));
                for i in 0..capacity(np) {
                    let filled = t.values.items[n.value_base as usize + i].is_some();
                    assert_eq!(filled, i < np, "value block holds exactly its prefixes");
                }
            }
            prefixes += np;
            if nc > 0 {
                blocks.push(("node", n.child_base as usize, capacity(nc)));
                for i in nc..capacity(nc) {
                    assert!(
                        t.node(n.child_base as usize + i) == &Node::EMPTY,
                        "spare child slot in use"
                    );
                }
            }
            for o in n.children.ones() {
                let o = o as u8;
                let child = n.child(o).unwrap();
                let child_key = key | at_octet(o, depth);
                let c = t.node(child);
                if c.is_leaf() {
                    prefixes += 1;
                    assert!(usize::from(c.leaf_len) > 8 * (depth + 1), "leaf stored too high");
                    assert!(usize::from(c.leaf_len) <= 8 * N);
                    assert_eq!(c.leaf_key & !mask(c.leaf_len), 0, "leaf host bits set");
                    assert_eq!(
                        c.leaf_key & mask(8 * (depth as u8 + 1)),
                        child_key,
                        "leaf off its path"
                    );
                    assert!(t.values.items[c.value_base as usize].is_some());
                    blocks.push(("value", c.value_base as usize, 1));
                } else {
                    stack.push((child, depth + 1, child_key));
                }
            }
        }
        assert_eq!(prefixes, t.len, "len disagrees with the stored prefixes");

        // Live and free blocks tile each arena exactly: nothing leaked, nothing shared.
        for (kind, arena_len, free) in [
            ("node", t.nodes.items.len(), &t.nodes.free),
            ("value", t.values.items.len(), &t.values.free),
        ] {
            let mut ranges: Vec<(usize, usize)> = blocks
                .iter()
                .filter(|b| b.0 == kind)
                .map(|b| (b.1, b.2))
                .collect();
            for (class, bases) in free.iter().enumerate() {
                ranges.extend(bases.iter().map(|&b| (b as usize, 1 << class)));
            }
            ranges.sort_unstable();
            let mut end = 0;
            for (base, cap) in ranges {
                assert_eq!(base, end, "{kind} arena: overlap or gap at {base}");
                end = base + cap;
            }
            assert_eq!(end, arena_len, "{kind} arena: blocks do not cover it");
        }
        live
    }

    fn check_map<V>(m: &PrefixMap<V>) -> (usize, usize) {
        (check(&m.v4), check(&m.v6))
    }

    #[test]
    fn removal_restores_the_empty_shape() {
        let mut m = PrefixMap::new();
        let prefixes = [
            "10.1.2.3/32",
            "10.1.2.0/25",
            "10.1.2.2/31",
            "2001:db8::1/128",
            "2001:db8::/48",
            "2001:db8::2/128",
            "10.200.0.0/16",
            "0.0.0.0/0",
        ];
        for (i, s) in prefixes.iter().enumerate() {
            m.insert(p(s), i);
            check_map(&m);
        }
        let (v4_nodes, v6_nodes) = check_map(&m);
        assert!(v4_nodes > 1 && v6_nodes > 1);
        let (v4_arena, v6_arena) = (m.v4.nodes.items.len(), m.v6.nodes.items.len());
        for s in prefixes {
            assert!(m.remove(p(s)).is_some());
            check_map(&m);
        }
        assert_eq!(check_map(&m), (1, 1), "only the roots stay");
        assert!(m.v4.node(ROOT).is_empty() && m.v6.node(ROOT).is_empty());

        // Freed blocks are reused rather than the arenas growing.
        for (i, s) in prefixes.iter().enumerate() {
            m.insert(p(s), i);
        }
        assert_eq!(
            (m.v4.nodes.items.len(), m.v6.nodes.items.len()),
            (v4_arena, v6_arena)
        );
        check_map(&m);
    }

    #[test]
    fn lone_host_routes_are_leaves() {
        let mut m = PrefixMap::new();
        m.insert(p("2001:db8::1/128"), 1);
        m.insert(p("192.0.2.1/32"), 2);
        // One leaf under the root instead of a chain of 15 (or 3) nodes.
        assert_eq!(check_map(&m), (1, 1));
        assert_eq!(m.v6.nodes.items.len(), 2);
        assert_eq!(m.lookup(a("2001:db8::1")), Some(&1));
        assert_eq!(m.lookup(a("2001:db8::2")), None);
        assert_eq!(m.lookup(a("192.0.2.1")), Some(&2));
        assert_eq!(m.lookup(a("192.0.2.0")), None);

        // A second host in the same /120 splits the leaf down to the last level; removing it merges back.
        m.insert(p("2001:db8::2/128"), 3);
        assert_eq!(check_map(&m).1, 16);
        assert_eq!(m.lookup(a("2001:db8::1")), Some(&1));
        assert_eq!(m.lookup(a("2001:db8::2")), Some(&3));
        m.remove(p("2001:db8::1/128"));
        assert_eq!(check_map(&m).1, 1);
        assert_eq!(m.get(p("2001:db8::2/128")), Some(&3));
    }

    #[test]
    fn blocks_grow_and_shrink_through_every_size() {
        let mut m = PrefixMap::new();
        // 256 children of one node, and 511 prefixes in one node.
        for i in 0..=255u8 {
            m.insert(p(&format!("10.{i}.0.0/16")), u32::from(i));
            m.insert(p(&format!("10.{i}.7.0/24")), 1000 + u32::from(i));
        }
        for l in 1..=8u8 {
            for x in 0..(1u16 << l) {
                let octet = (x << (8 - l)) as u8;
                m.insert(p(&format!("172.16.{octet}.0/{}", 16 + l)), 2000);
            }
        }
        check_map(&m);
        assert_eq!(m.len(), 512 + 510);
        assert_eq!(m.lookup(a("10.77.7.1")), Some(&1077));
        assert_eq!(m.lookup(a("10.77.8.1")), Some(&77));
        for i in (0..=255u8).rev() {
            assert_eq!(m.remove(p(&format!("10.{i}.7.0/24"))), Some(1000 + u32::from(i)));
            check_map(&m);
        }
        assert_eq!(m.lookup(a("10.77.7.1")), Some(&77));
    }

    #[test]
    fn iterates_in_prefix_order() {
        let entries = [
            "2001:db8::/32",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "10.0.0.0/16",
            "10.0.0.0/32",
            "10.0.0.0/9",
            "9.255.255.255/32",
            "10.128.0.0/9",
            "10.0.0.128/25",
            "::/0",
            "2001:db8::/128",
            "128.0.0.0/1",
        ];
        let m: PrefixMap<usize> = entries.iter().enumerate().map(|(i, s)| (p(s), i)).collect();
        let mut want: Vec<IpPrefix> = entries.iter().map(|s| p(s)).collect();
        want.sort();
        let got: Vec<IpPrefix> = m.iter().map(|(prefix, _)| prefix).collect();
        assert_eq!(got, want);
        for (prefix, &i) in &m {
            assert_eq!(prefix, p(entries[i]), "each prefix comes with its own value");
        }
        assert_eq!(m.iter().len(), entries.len());
    }

    #[test]
    fn debug_prints_as_a_map() {
        let m = map(&[("10.0.0.0/8", 1), ("::/0", 2)]);
        assert_eq!(
            format!("{m:?}"),
            "{V4(Ipv4Prefix { addr: 10.0.0.0, len: 8 }): 1, V6(Ipv6Prefix { addr: ::, len: 0 }): 2}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The shape invariants hold after every update, for keys crowded into a few subtrees so
        /// that leaves split, merge and blocks resize; lookups agree with a scan of the contents.
        #[test]
        fn shape_holds_under_random_updates(
            ops in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), 0u8..4, proptest::prelude::any::<u16>(), 0u8..=32, 0u8..=128),
                1..120,
            ),
        ) {
            let mut m = PrefixMap::new();
            let bases4 = [0x0a01_0200u32, 0xc000_0200, 0, u32::MAX];
            let bases6 = [0x2001_0db8u128 << 96, 0, u128::MAX, 0xfe80 << 112];
            for &(insert, base, noise, len4, len6) in &ops {
                let v4 = Ipv4Prefix::new(Ipv4Addr::from_bits(bases4[usize::from(base)] ^ u32::from(noise)), len4);
                let v6 = Ipv6Prefix::new(Ipv6Addr::from_bits(bases6[usize::from(base)] ^ u128::from(noise)), len6);
                for prefix in [IpPrefix::from(v4.unwrap()), IpPrefix::from(v6.unwrap())] {
                    if insert {
                        m.insert(prefix, noise);
                    } else {
                        m.remove(prefix);
                    }
                    check_map(&m);
                }
            }
            let entries: Vec<(IpPrefix, u16)> = m.iter().map(|(p, &v)| (p, v)).collect();
            for &(prefix, _) in &entries {
                let probe = prefix.addr();
                let want = entries.iter().filter(|(p, _)| p.contains(probe)).max_by_key(|(p, _)| p.len());
                proptest::prop_assert_eq!(m.longest_match(probe).map(|(p, &v)| (p, v)), want.copied());
            }
        }
    }
}
