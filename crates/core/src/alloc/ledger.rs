//! What in-flight requests hold, so that an allocator in memory can be compared with the store
//! while requests keep running.
//!
//! An allocator's memory is a cache of the allocation keys in the store. The two can drift:
//! a bug that forgets to give back a reservation leaves a value used in memory and free in the
//! store, which no one can then have until a restart. Comparing memory with a store snapshot
//! has to tell such a leak from a reservation that simply has not committed yet, or that
//! committed after the snapshot was read. The [`Ledger`] records both: values reserved and not
//! yet settled, and, while a comparison is under way, every value whose state changed. Those
//! values are left alone; everything else must match the snapshot.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// In-flight reservations of one allocator, and the values touched during a comparison.
#[derive(Debug)]
pub struct Ledger<T> {
    inflight: HashMap<T, u32>,
    /// `Some` while a comparison is under way: values reserved, settled or released since it
    /// began, whose state in the snapshot may already be out of date.
    touched: Option<HashSet<T>>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Self {
            inflight: HashMap::new(),
            touched: None,
        }
    }
}

impl<T: Copy + Eq + Hash> Ledger<T> {
    /// A request reserved `value` in memory; its store write is still to come.
    pub fn reserve(&mut self, value: T) {
        *self.inflight.entry(value).or_default() += 1;
        self.touch(value);
    }

    /// A reservation of `value` was committed to the store or given back.
    pub fn settle(&mut self, value: T) {
        if let Some(n) = self.inflight.get_mut(&value) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(&value);
            }
        }
        self.touch(value);
    }

    /// `value` changed state in the store without a reservation (a committed release, or a
    /// key learned from the store).
    pub fn touch(&mut self, value: T) {
        if let Some(t) = self.touched.as_mut() {
            t.insert(value);
        }
    }

    /// Reservations not yet settled.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Starts a comparison: call before reading the store snapshot.
    pub fn begin(&mut self) {
        self.touched = Some(HashSet::new());
    }

    /// Ends a comparison started by [`Ledger::begin`]: the values to leave alone, those in
    /// flight now and those touched since the snapshot was read.
    pub fn finish(&mut self) -> HashSet<T> {
        let mut skip = self.touched.take().unwrap_or_default();
        skip.extend(self.inflight.keys().copied());
        skip
    }
}

/// How memory must change to match a store snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconcile<T> {
    /// Used in memory, absent from the store: leaked, to be freed.
    pub release: Vec<T>,
    /// In the store, free in memory: to be marked used.
    pub occupy: Vec<T>,
}

impl<T> Reconcile<T> {
    pub fn is_empty(&self) -> bool {
        self.release.is_empty() && self.occupy.is_empty()
    }
}

/// Compares the values memory holds with those the store holds, leaving out `skip` (see
/// [`Ledger::finish`]). Both lists come out in the order of their inputs.
pub fn reconcile<T: Copy + Eq + Hash>(
    memory: impl IntoIterator<Item = T>,
    store: impl IntoIterator<Item = T>,
    skip: &HashSet<T>,
) -> Reconcile<T> {
    let memory: Vec<T> = memory.into_iter().collect();
    let in_memory: HashSet<T> = memory.iter().copied().collect();
    let store: Vec<T> = store.into_iter().collect();
    let in_store: HashSet<T> = store.iter().copied().collect();
    Reconcile {
        release: memory
            .into_iter()
            .filter(|v| !in_store.contains(v) && !skip.contains(v))
            .collect(),
        occupy: store
            .into_iter()
            .filter(|v| !in_memory.contains(v) && !skip.contains(v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_and_missing_values_are_found() {
        let plan = reconcile([1, 2, 3], [2, 3, 4], &HashSet::new());
        assert_eq!(plan.release, [1]);
        assert_eq!(plan.occupy, [4]);
        assert!(reconcile([1, 2], [2, 1], &HashSet::new()).is_empty());
    }

    #[test]
    fn inflight_reservations_are_not_leaks() {
        let mut l = Ledger::default();
        l.reserve(7);
        l.reserve(7);
        l.begin();
        l.settle(7);
        let skip = l.finish();
        // Still held by the second reservation.
        assert!(skip.contains(&7));
        assert!(reconcile([7], [], &skip).is_empty());
        l.settle(7);
        assert_eq!(l.inflight(), 0);
        // Nothing in flight, no comparison under way: a value memory holds alone is a leak.
        l.begin();
        assert_eq!(reconcile([7], [], &l.finish()).release, [7]);
    }

    #[test]
    fn values_that_changed_during_the_snapshot_are_left_alone() {
        let mut l: Ledger<u32> = Ledger::default();
        l.begin();
        // Reserved and committed after the snapshot was read: memory has it, the snapshot
        // does not, the store does.
        l.reserve(5);
        l.settle(5);
        // Released and committed after the snapshot: the snapshot has it, memory does not.
        l.touch(9);
        let skip = l.finish();
        assert!(reconcile([5], [9], &skip).is_empty());
        // Touches outside a comparison are not remembered.
        l.touch(1);
        l.begin();
        assert!(!l.finish().contains(&1));
    }
}
