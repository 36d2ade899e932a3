//! The native resolver's answer cache: positive answers for their smallest TTL, negative ones
//! (NXDOMAIN, no data) for the SOA's negative TTL (RFC 2308 §5), each capped at a day.
//!
//! Bounded: when full, expired entries go first, then arbitrary ones (a hash map's order), which
//! is enough for a stub resolver whose working set is the hosts a program talks to.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

/// The longest time anything stays cached.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A cached outcome of one (name, type) question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    /// The addresses, CNAMEs already followed.
    Addrs(Vec<IpAddr>),
    /// NXDOMAIN.
    NoSuchName,
    /// NOERROR without data of that type.
    NoData,
}

#[derive(Debug)]
struct Entry {
    expires: Instant,
    value: Cached,
}

#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<Box<[u8]>, Entry>,
    capacity: usize,
}

/// The key of a (name, type) question: the name's wire form (`message::wire_name`) in lower
/// case, then the type. Built once per question and used for both the lookup and the insert.
pub(crate) fn key(wire_name: &[u8], rtype: RecordType) -> Vec<u8> {
    let mut key = Vec::with_capacity(wire_name.len() + 2);
    // Label lengths are below 64, so lowering ASCII letters leaves them alone.
    key.extend(wire_name.iter().map(u8::to_ascii_lowercase));
    key.extend_from_slice(&u16::from(rtype).to_be_bytes());
    key
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The live entry for `key` (see [`key`]).
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        if entry.expires > Instant::now() {
            return Some(entry.value.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Caches `value` for `ttl` seconds (nothing for 0).
    pub(crate) fn insert(&mut self, key: &[u8], value: Cached, ttl: u32) {
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            self.evict();
        }
        let ttl = Duration::from_secs(u64::from(ttl)).min(MAX_TTL);
        let entry = Entry {
            expires: Instant::now() + ttl,
            value,
        };
        self.entries.insert(key.into(), entry);
    }

    fn evict(&mut self) {
        let now = Instant::now();
        self.entries.retain(|_, entry| entry.expires > now);
        let excess = (self.entries.len() + 1).saturating_sub(self.capacity);
        if excess > 0 {
            let victims: Vec<_> = self.entries.keys().take(excess).cloned().collect();
            for victim in victims {
                self.entries.remove(&victim);
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        key(&wire, rtype)
    }

    #[test]
    fn full_cache_evicts_instead_of_growing() {
        let mut cache = Cache::new(3);
        for i in 0..10 {
            cache.insert(&k(&format!("n{i}."), RecordType::A), Cached::NoData, 60);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&k("n9.", RecordType::A)), Some(Cached::NoData));
        // Replacing an entry of a full cache evicts nothing.
        cache.insert(&k("n9.", RecordType::A), Cached::NoSuchName, 60);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn zero_ttl_is_not_cached_and_keys_ignore_case() {
        let mut cache = Cache::new(10);
        cache.insert(&k("a.", RecordType::A), Cached::NoSuchName, 0);
        assert_eq!(cache.get(&k("a.", RecordType::A)), None);
        cache.insert(&k("B.", RecordType::AAAA), Cached::NoSuchName, 5);
        assert_eq!(
            cache.get(&k("b.", RecordType::AAAA)),
            Some(Cached::NoSuchName)
        );
        assert_eq!(cache.get(&k("b.", RecordType::A)), None);
    }
}
