//! A sparse bitmap over `u128` indices: memory grows with the bits that are set, not with the
//! size of the index space, so an IPv6 /64 costs nothing until addresses are handed out.
//!
//! Bits live in 4096-bit blocks kept in a hash map by block number. A block with few bits set
//! is a short sorted list (a single bit is stored inline); a denser one is a 64-word bitmap
//! with a summary of its full words, so "first clear bit at or after i" costs a couple of
//! `trailing_zeros` instead of a scan. Looking for a clear bit walks block numbers upward, and
//! an absent block means "all clear", so in a sparse range the answer is one lookup away.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const BLOCK_WORDS: usize = 64;
const BLOCK_BITS: u128 = 64 * BLOCK_WORDS as u128;

/// Blocks with at most this many bits set keep a sorted list instead of a bitmap: a lone
/// address in a huge IPv6 range then costs a few bytes, not 512.
const SPARSE_MAX: usize = 32;

#[derive(Clone, Debug)]
enum Block {
    /// Exactly one bit: the common case in a large IPv6 range, kept off the heap.
    One(u16),
    /// A few bits: sorted indices within the block.
    Sparse(Box<SmallList>),
    Dense(Box<Dense>),
}

/// Up to `SPARSE_MAX` sorted bit indices, allocated once (not per insert).
#[derive(Clone, Debug)]
struct SmallList {
    len: u8,
    items: [u16; SPARSE_MAX],
}

impl SmallList {
    fn as_slice(&self) -> &[u16] {
        &self.items[..usize::from(self.len)]
    }
}

#[derive(Clone, Debug)]
struct Dense {
    words: [u64; BLOCK_WORDS],
    /// Bit w is set when `words[w]` is all ones.
    full_words: u64,
    count: u16,
}

impl Dense {
    fn first_clear_from(&self, from: usize) -> Option<usize> {
        let w = from / 64;
        let b = from % 64;
        let free_here = !self.words[w] & (u64::MAX << b);
        if free_here != 0 {
            return Some(w * 64 + free_here.trailing_zeros() as usize);
        }
        if w + 1 >= BLOCK_WORDS {
            return None;
        }
        let candidates = !self.full_words & (u64::MAX << (w + 1));
        if candidates == 0 {
            return None;
        }
        let w2 = candidates.trailing_zeros() as usize;
        Some(w2 * 64 + (!self.words[w2]).trailing_zeros() as usize)
    }
}

impl Block {
    fn count(&self) -> usize {
        match self {
            Block::One(_) => 1,
            Block::Sparse(v) => usize::from(v.len),
            Block::Dense(d) => usize::from(d.count),
        }
    }

    fn get(&self, bit: usize) -> bool {
        match self {
            Block::One(b) => usize::from(*b) == bit,
            Block::Sparse(v) => v.as_slice().binary_search(&(bit as u16)).is_ok(),
            Block::Dense(d) => d.words[bit / 64] & (1 << (bit % 64)) != 0,
        }
    }

    fn set(&mut self, bit: usize) -> bool {
        match self {
            Block::One(b) if usize::from(*b) == bit => false,
            Block::One(b) => {
                let (lo, hi) = if usize::from(*b) < bit {
                    (*b, bit as u16)
                } else {
                    (bit as u16, *b)
                };
                let mut items = [0u16; SPARSE_MAX];
                items[0] = lo;
                items[1] = hi;
                *self = Block::Sparse(Box::new(SmallList { len: 2, items }));
                true
            }
            Block::Sparse(list) => match list.as_slice().binary_search(&(bit as u16)) {
                Ok(_) => false,
                Err(pos) => {
                    let len = usize::from(list.len);
                    if len < SPARSE_MAX {
                        list.items.copy_within(pos..len, pos + 1);
                        list.items[pos] = bit as u16;
                        list.len += 1;
                    } else {
                        let mut d = Dense {
                            words: [0; BLOCK_WORDS],
                            full_words: 0,
                            count: 0,
                        };
                        for &b in list.as_slice().iter().chain([&(bit as u16)]) {
                            d.words[usize::from(b) / 64] |= 1 << (b % 64);
                            d.count += 1;
                        }
                        *self = Block::Dense(Box::new(d));
                    }
                    true
                }
            },
            Block::Dense(d) => {
                let (w, mask) = (bit / 64, 1u64 << (bit % 64));
                if d.words[w] & mask != 0 {
                    return false;
                }
                d.words[w] |= mask;
                if d.words[w] == u64::MAX {
                    d.full_words |= 1 << w;
                }
                d.count += 1;
                true
            }
        }
    }

    fn clear(&mut self, bit: usize) -> bool {
        match self {
            // `SparseBitmap::clear` removes a one-bit block itself.
            Block::One(_) => false,
            Block::Sparse(list) => match list.as_slice().binary_search(&(bit as u16)) {
                Ok(pos) => {
                    let len = usize::from(list.len);
                    list.items.copy_within(pos + 1..len, pos);
                    list.len -= 1;
                    true
                }
                Err(_) => false,
            },
            Block::Dense(d) => {
                let (w, mask) = (bit / 64, 1u64 << (bit % 64));
                if d.words[w] & mask == 0 {
                    return false;
                }
                d.words[w] &= !mask;
                d.full_words &= !(1 << w);
                d.count -= 1;
                true
            }
        }
    }

    fn is_full(&self) -> bool {
        matches!(self, Block::Dense(d) if d.full_words == u64::MAX)
    }

    /// First clear bit at or after `from` (a bit index inside the block).
    fn first_clear_from(&self, from: usize) -> Option<usize> {
        match self {
            Block::One(b) => {
                let want = if usize::from(*b) == from {
                    from + 1
                } else {
                    from
                };
                (want < BLOCK_BITS as usize).then_some(want)
            }
            Block::Sparse(list) => {
                let v = list.as_slice();
                // Walk the set bits from `from`; the first gap is the answer.
                let mut want = from;
                let start = v.partition_point(|&b| usize::from(b) < from);
                for &b in &v[start..] {
                    if usize::from(b) != want {
                        break;
                    }
                    want += 1;
                }
                (want < BLOCK_BITS as usize).then_some(want)
            }
            Block::Dense(d) => d.first_clear_from(from),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Block::One(_) => 0,
            Block::Sparse(_) => std::mem::size_of::<SmallList>(),
            Block::Dense(_) => std::mem::size_of::<Dense>(),
        }
    }

    fn bits(&self) -> Vec<usize> {
        match self {
            Block::One(b) => vec![usize::from(*b)],
            Block::Sparse(v) => v.as_slice().iter().map(|&b| usize::from(b)).collect(),
            Block::Dense(d) => {
                let mut out = Vec::with_capacity(usize::from(d.count));
                for (w, &word) in d.words.iter().enumerate() {
                    let mut word = word;
                    while word != 0 {
                        out.push(w * 64 + word.trailing_zeros() as usize);
                        word &= word - 1;
                    }
                }
                out
            }
        }
    }
}

/// A multiply-shift hasher for block numbers: SipHash's DoS resistance buys nothing here
/// (block numbers come from our own allocator) and costs a third of an allocation.
#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// A set of `u128` indices.
#[derive(Clone, Debug, Default)]
pub struct SparseBitmap {
    /// Block numbers fit in 64 bits for every index below 2^76, far beyond any range here.
    blocks: HashMap<u64, Block, BuildHasherDefault<BlockHasher>>,
    count: u128,
}

impl SparseBitmap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of set bits.
    pub fn count(&self) -> u128 {
        self.count
    }

    pub fn get(&self, i: u128) -> bool {
        let (b, bit) = split(i);
        self.blocks.get(&b).is_some_and(|blk| blk.get(bit))
    }

    /// Sets bit `i`; returns whether it was clear.
    pub fn set(&mut self, i: u128) -> bool {
        use std::collections::hash_map::Entry;
        let (b, bit) = split(i);
        let new = match self.blocks.entry(b) {
            Entry::Vacant(v) => {
                v.insert(Block::One(bit as u16));
                true
            }
            Entry::Occupied(mut o) => o.get_mut().set(bit),
        };
        if new {
            self.count += 1;
        }
        new
    }

    /// Clears bit `i`; returns whether it was set.
    pub fn clear(&mut self, i: u128) -> bool {
        let (b, bit) = split(i);
        let Some(blk) = self.blocks.get_mut(&b) else {
            return false;
        };
        if let Block::One(only) = blk {
            if usize::from(*only) != bit {
                return false;
            }
            self.blocks.remove(&b);
            self.count -= 1;
            return true;
        }
        if !blk.clear(bit) {
            return false;
        }
        self.count -= 1;
        if blk.count() == 0 {
            // Give the memory back: the bitmap stays proportional to what is in use.
            self.blocks.remove(&b);
        }
        true
    }

    /// The first clear bit in `from..=to`.
    pub fn first_clear(&self, from: u128, to: u128) -> Option<u128> {
        if from > to {
            return None;
        }
        let mut b = (from / BLOCK_BITS) as u64;
        let last_block = (to / BLOCK_BITS).min(u128::from(u64::MAX)) as u64;
        let mut offset = (from % BLOCK_BITS) as usize;
        loop {
            if b > last_block {
                return None;
            }
            match self.blocks.get(&b) {
                Some(blk) => {
                    if !blk.is_full()
                        && let Some(bit) = blk.first_clear_from(offset)
                    {
                        let i = u128::from(b) * BLOCK_BITS + bit as u128;
                        return (i <= to).then_some(i);
                    }
                    if b == u64::MAX {
                        return None;
                    }
                    b += 1;
                    offset = 0;
                }
                None => {
                    // No block here: everything in it is clear.
                    let i = u128::from(b) * BLOCK_BITS + offset as u128;
                    return (i <= to).then_some(i);
                }
            }
        }
    }

    /// Like [`first_clear`](Self::first_clear), and sets the bit found: one hash lookup in
    /// the common case instead of two, which matters once the table outgrows the caches.
    pub fn take_first_clear(&mut self, from: u128, to: u128) -> Option<u128> {
        use std::collections::hash_map::Entry;
        if from > to {
            return None;
        }
        let mut b = (from / BLOCK_BITS) as u64;
        let last_block = (to / BLOCK_BITS).min(u128::from(u64::MAX)) as u64;
        let mut offset = (from % BLOCK_BITS) as usize;
        loop {
            if b > last_block {
                return None;
            }
            match self.blocks.entry(b) {
                Entry::Vacant(v) => {
                    let i = u128::from(b) * BLOCK_BITS + offset as u128;
                    if i > to {
                        return None;
                    }
                    v.insert(Block::One(offset as u16));
                    self.count += 1;
                    return Some(i);
                }
                Entry::Occupied(mut o) => {
                    let blk = o.get_mut();
                    if !blk.is_full()
                        && let Some(bit) = blk.first_clear_from(offset)
                    {
                        let i = u128::from(b) * BLOCK_BITS + bit as u128;
                        if i > to {
                            return None;
                        }
                        blk.set(bit);
                        self.count += 1;
                        return Some(i);
                    }
                }
            }
            if b == u64::MAX {
                return None;
            }
            b += 1;
            offset = 0;
        }
    }

    /// Approximate heap bytes used (block contents plus hash-table slots).
    pub fn heap_bytes(&self) -> usize {
        self.blocks
            .values()
            .map(|b| b.heap_bytes() + std::mem::size_of::<(u64, Block)>() + 1)
            .sum()
    }

    /// Every set bit, in order.
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        let mut keys: Vec<u64> = self.blocks.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter().flat_map(move |b| {
            self.blocks[&b]
                .bits()
                .into_iter()
                .map(move |bit| u128::from(b) * BLOCK_BITS + bit as u128)
        })
    }
}

fn split(i: u128) -> (u64, usize) {
    ((i / BLOCK_BITS) as u64, (i % BLOCK_BITS) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn set_clear_find() {
        let mut m = SparseBitmap::new();
        assert_eq!(m.first_clear(0, 10), Some(0));
        for i in 0..5000 {
            assert!(m.set(i));
        }
        assert!(!m.set(10));
        assert_eq!(m.count(), 5000);
        assert_eq!(m.first_clear(0, 10_000), Some(5000));
        assert_eq!(m.first_clear(0, 4999), None);
        assert!(m.clear(4095));
        assert_eq!(m.first_clear(0, 10_000), Some(4095));
        assert_eq!(m.first_clear(4096, 10_000), Some(5000));
        assert!(!m.clear(4095));
        // Huge indices cost one block.
        let big = u128::from(u64::MAX) * 3;
        assert!(m.set(big));
        assert!(m.get(big));
        assert_eq!(m.first_clear(big, big), None);
        assert_eq!(m.first_clear(big, big + 1), Some(big + 1));
        for i in 0..5000 {
            m.clear(i);
        }
        m.clear(big);
        assert_eq!(m.count(), 0);
        assert_eq!(m.heap_bytes(), 0);
    }

    proptest! {
        #[test]
        fn matches_a_plain_set(ops in prop::collection::vec((any::<bool>(), 0u128..20_000), 0..400),
                               from in 0u128..20_000, len in 0u128..20_000) {
            let mut m = SparseBitmap::new();
            let mut s = std::collections::BTreeSet::new();
            for (set, i) in ops {
                if set { prop_assert_eq!(m.set(i), s.insert(i)); } else { prop_assert_eq!(m.clear(i), s.remove(&i)); }
            }
            prop_assert_eq!(m.count(), s.len() as u128);
            let to = from + len;
            let want = (from..=to).find(|i| !s.contains(i));
            prop_assert_eq!(m.first_clear(from, to), want);
            prop_assert_eq!(m.take_first_clear(from, to), want);
            if let Some(w) = want { s.insert(w); }
            prop_assert_eq!(m.iter().collect::<Vec<_>>(), s.iter().copied().collect::<Vec<_>>());
        }
    }
}
