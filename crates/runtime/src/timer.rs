//! The hub's timers: a binary heap of deadlines over a slab of actions.
//!
//! Deadlines are nanoseconds since the hub's epoch. Cancelling marks the slab slot free; the stale
//! heap entry is skipped when it surfaces (its sequence number no longer matches), and the heap is
//! rebuilt when stale entries outnumber live ones, so many short-lived `with_timeout` scopes with
//! long deadlines do not grow it without bound. Equal deadlines fire in the order they were added.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Identifies one armed timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
    seq: u64,
}

pub(crate) struct Timers<A> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    entries: Vec<Option<(u64, A)>>,
    free: Vec<u32>,
    next_seq: u64,
    live: usize,
}

impl<A> Timers<A> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            entries: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            live: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn add(&mut self, deadline: u64, action: A) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some((seq, action));
                slot
            }
            None => {
                self.entries.push(Some((seq, action)));
                (self.entries.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((deadline, seq, slot)));
        self.live += 1;
        TimerKey { slot, seq }
    }

    /// Disarms a timer; returns its action if it had not fired yet.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<A> {
        let entry = self.entries.get_mut(key.slot as usize)?;
        match entry {
            Some((seq, _)) if *seq == key.seq => {
                let (_, action) = entry.take()?;
                self.free.push(key.slot);
                self.live -= 1;
                if self.heap.len() > 1024 && self.heap.len() > 2 * self.live {
                    self.compact();
                }
                Some(action)
            }
            _ => None,
        }
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        let kept: Vec<_> = self
            .heap
            .drain()
            .filter(|Reverse((_, seq, slot))| {
                matches!(&entries[*slot as usize], Some((s, _)) if s == seq)
            })
            .collect();
        self.heap = BinaryHeap::from(kept);
    }

    /// Whether the timer `key` names is still armed (neither fired nor cancelled).
    pub(crate) fn is_armed(&self, key: TimerKey) -> bool {
        matches!(self.entries.get(key.slot as usize), Some(Some((seq, _))) if *seq == key.seq)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(Reverse((deadline, seq, slot))) = self.heap.peek().copied() {
            if matches!(&self.entries[slot as usize], Some((s, _)) if *s == seq) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the action of the earliest timer due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<A> {
        loop {
            let Reverse((deadline, seq, slot)) = *self.heap.peek()?;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            let entry = &mut self.entries[slot as usize];
            if matches!(entry, Some((s, _)) if *s == seq) {
                let (_, action) = entry.take()?;
                self.free.push(slot);
                self.live -= 1;
                return Some(action);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_then_insertion_order() {
        let mut t = Timers::new();
        t.add(20, "c");
        t.add(10, "a");
        t.add(10, "b");
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(10), Some("a"));
        assert_eq!(t.pop_due(10), Some("b"));
        assert_eq!(t.pop_due(30), Some("c"));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancelled_timer_never_fires() {
        let mut t = Timers::new();
        let k = t.add(10, 1);
        t.add(20, 2);
        assert!(t.is_armed(k));
        assert_eq!(t.cancel(k), Some(1));
        assert!(!t.is_armed(k));
        assert_eq!(t.cancel(k), None);
        assert_eq!(t.next_deadline(), Some(20));
        assert_eq!(t.pop_due(100), Some(2));
    }

    #[test]
    fn compaction_keeps_live_timers() {
        let mut t = Timers::new();
        let keys: Vec<_> = (0..5000).map(|i| t.add(1_000_000 + i, i)).collect();
        t.add(5, 99_999);
        for k in &keys {
            t.cancel(*k);
        }
        assert!(t.heap.len() < 3000);
        assert_eq!(t.pop_due(10), Some(99_999));
        assert_eq!(t.pop_due(u64::MAX), None);
    }
}
