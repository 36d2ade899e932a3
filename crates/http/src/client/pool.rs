//! The keep-alive pool: idle connections by origin, most recently used first.
//!
//! A connection comes back when its response body has been read to the end and both sides said
//! keep-alive. Taking one out checks its age (the idle timeout) and probes it: a server that
//! closed an idle connection has usually delivered its FIN by then, and reusing it would cost a
//! failed request. The probe cannot catch a close that races with the request, hence the one retry
//! of idempotent requests in the client; for those the probe is free when the hub knows the
//! socket is still empty (no syscall, see `Conn::is_alive`). The pool lives behind a `Mutex` (held only to push or
//! pop, never across I/O) so that a `Client` is `Send + Sync`.
//!
//! The origin used last keeps its list outside the map: a client fetching from one site (the
//! common case: a crawler, an API client) finds its connections by comparing the key, without
//! hashing it twice per request (SipHash was ~460 instructions, ~4 % of the client's, per page).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::{AsKeyRef, Conn, KeyRef, PoolKey};

/// Counters of a [`Client`](super::Client)'s connections, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Connections opened.
    pub connections: u64,
    /// Requests sent on a connection taken from the pool.
    pub reused: u64,
    /// Idle connections discarded by the liveness probe or the idle timeout.
    pub discarded: u64,
    /// Requests retried on a fresh connection after a reused one failed before any response byte.
    pub retries: u64,
    /// Idle connections in the pool now.
    pub idle: u64,
}

/// Origins in the map beyond which a new origin's checkin first drops the emptied lists.
const PRUNE_AT: usize = 64;

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The idle connections by origin.
#[derive(Default)]
struct Lists {
    /// The origin whose list was made last while this slot was free (or had emptied), and its
    /// list: found by comparing keys.
    recent: Option<(PoolKey, Vec<Idle>)>,
    /// Every other origin's list.
    others: HashMap<PoolKey, Vec<Idle>>,
    /// Idle connections taken out by `checkout`, counted under the lock it holds anyway: an
    /// atomic counter would add a locked instruction per request. Reused ones are these minus
    /// the discarded ones (every discarded connection was taken out first).
    taken: u64,
}

impl Lists {
    fn get_mut(&mut self, key: KeyRef<'_>) -> Option<&mut Vec<Idle>> {
        match &mut self.recent {
            Some((recent, list)) if recent.key_ref() == key => Some(list),
            _ => self.others.get_mut(&key as &dyn AsKeyRef),
        }
    }

    /// A list for an origin that has none.
    fn insert(&mut self, key: PoolKey, list: Vec<Idle>) {
        match &self.recent {
            Some((_, held)) if !held.is_empty() => {
                if self.others.len() >= PRUNE_AT {
                    self.others.retain(|_, list| !list.is_empty());
                }
                self.others.insert(key, list);
            }
            _ => self.recent = Some((key, list)),
        }
    }

    fn count(&self) -> u64 {
        let recent = self.recent.as_ref().map_or(0, |(_, list)| list.len());
        (recent + self.others.values().map(Vec::len).sum::<usize>()) as u64
    }
}

pub(crate) struct Pool {
    idle: Mutex<Lists>,
    max_idle_per_host: usize,
    idle_timeout: Option<Duration>,
    connections: AtomicU64,
    discarded: AtomicU64,
    retries: AtomicU64,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("idle_timeout", &self.idle_timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(max_idle_per_host: usize, idle_timeout: Option<Duration>) -> Pool {
        Pool {
            idle: Mutex::new(Lists::default()),
            max_idle_per_host,
            idle_timeout,
            connections: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        // A panic while holding the lock cannot leave the map inconsistent (push/pop only).
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live idle connection for `key`, most recently used first. `retryable`: the request
    /// would be retried on a new connection if this one turned out dead before any response
    /// byte, which lets the liveness probe skip its syscall (see [`Conn::is_alive`]). `now` is
    /// a recent reading of the clock, for the idle timeout.
    pub(crate) fn checkout(
        &self,
        key: KeyRef<'_>,
        retryable: bool,
        now: Instant,
    ) -> Option<Box<Conn>> {
        let mut dead = Vec::new();
        let found = loop {
            let candidate = {
                // An emptied list stays in the map: the next checkin for the origin then needs
                // neither a clone of the key nor a second hash (`checkin` prunes empty lists).
                let mut idle = self.lock();
                let Some(list) = idle.get_mut(key) else {
                    break None;
                };
                let candidate = list.pop();
                idle.taken += u64::from(candidate.is_some());
                candidate
            };
            let Some(Idle { conn, since }) = candidate else {
                break None;
            };
            let expired = self
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(since) >= t);
            if expired || !conn.is_alive(retryable) {
                dead.push(conn);
                continue;
            }
            break Some(conn);
        };
        if !dead.is_empty() {
            self.discarded
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            drop(dead);
        }
        found.map(|mut conn| {
            conn.reused = true;
            conn
        })
    }

    /// Keeps `conn` for reuse (dropping the oldest beyond the per-host cap).
    pub(crate) fn checkin(&self, conn: Box<Conn>) {
        if self.max_idle_per_host == 0 || !conn.buffered().is_empty() {
            return;
        }
        let since = Instant::now();
        let evicted = {
            let mut idle = self.lock();
            match idle.get_mut(conn.key.key_ref()) {
                Some(list) => {
                    list.push(Idle { conn, since });
                    if list.len() > self.max_idle_per_host {
                        Some(list.remove(0))
                    } else {
                        None
                    }
                }
                None => {
                    idle.insert(conn.key.clone(), vec![Idle { conn, since }]);
                    None
                }
            }
        };
        drop(evicted);
    }

    pub(crate) fn count_connect(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let (taken, idle) = {
            let lists = self.lock();
            (lists.taken, lists.count())
        };
        let discarded = self.discarded.load(Ordering::Relaxed);
        ClientStats {
            connections: self.connections.load(Ordering::Relaxed),
            reused: taken.saturating_sub(discarded),
            discarded,
            retries: self.retries.load(Ordering::Relaxed),
            idle,
        }
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        let all = {
            let mut lists = self.lock();
            let taken = lists.taken;
            let all = std::mem::take(&mut *lists);
            lists.taken = taken;
            all
        };
        drop(all);
    }
}
