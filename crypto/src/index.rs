//! Receiver indices (paper 5.4.2): the random 32-bit names each side gives its sessions, so a data
//! message finds its keys without revealing who sent it.

use rand_core::RngCore;
use std::collections::BTreeMap;

/// Maps the indices we handed out to whatever the daemon keeps per session (a peer handle, a slot).
#[derive(Debug, Clone)]
pub struct IndexTable<V> {
    entries: BTreeMap<u32, V>,
}

impl<V> Default for IndexTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> IndexTable<V> {
    pub fn new() -> Self {
        IndexTable {
            entries: BTreeMap::new(),
        }
    }

    /// Allocates a fresh random index for `value`. Indices are unpredictable so an off-path attacker
    /// cannot aim packets at a session; collisions with live indices are redrawn.
    pub fn insert(&mut self, value: V, rng: &mut impl RngCore) -> u32 {
        loop {
            let index = rng.next_u32();
            if let std::collections::btree_map::Entry::Vacant(e) = self.entries.entry(index) {
                e.insert(value);
                return index;
            }
        }
    }

    pub fn get(&self, index: u32) -> Option<&V> {
        self.entries.get(&index)
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut V> {
        self.entries.get_mut(&index)
    }

    pub fn remove(&mut self, index: u32) -> Option<V> {
        self.entries.remove(&index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    /// An RNG that repeats a value, to force a collision.
    struct Repeating(Vec<u32>);
    impl RngCore for Repeating {
        fn next_u32(&mut self) -> u32 {
            self.0.remove(0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    #[test]
    fn indices_are_unique_and_removable() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut t = IndexTable::new();
        let a = t.insert("a", &mut rng);
        let b = t.insert("b", &mut rng);
        assert_ne!(a, b);
        assert_eq!(t.get(a), Some(&"a"));
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.get(a), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn collisions_are_redrawn() {
        let mut t = IndexTable::new();
        assert_eq!(t.insert(1, &mut Repeating(vec![7])), 7);
        assert_eq!(t.insert(2, &mut Repeating(vec![7, 7, 9])), 9);
        assert_eq!(t.get(7), Some(&1));
    }
}
