//! The frontier of one process: a green queue, a seen set and per-host gates, all on one hub.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green_runtime::sync::{Queue, Semaphore};

use super::{host_key, Frontier, Item, Outcome};

/// The in-memory frontier (the default): everything lives in this process, on its hub.
///
/// The crawl is finished when no URL is queued or claimed; then every waiting
/// [`claim`](Frontier::claim) returns `None`.
#[derive(Debug)]
pub struct MemoryFrontier {
    queue: Queue<Item>,
    seen: RefCell<HashSet<String>>,
    /// Items queued or claimed and not completed.
    outstanding: Cell<u64>,
    politeness: Option<Politeness>,
}

/// `--per-host` and `--delay` in one process.
#[derive(Debug)]
struct Politeness {
    per_host: Option<usize>,
    delay: Duration,
    hosts: RefCell<HashMap<String, Rc<HostGate>>>,
}

#[derive(Debug)]
struct HostGate {
    in_flight: Semaphore,
    next_start: Cell<Instant>,
}

impl MemoryFrontier {
    /// A frontier with at most `per_host` requests in flight per host and `delay` between the
    /// starts of two requests to one host.
    pub fn new(per_host: Option<usize>, delay: Option<Duration>) -> MemoryFrontier {
        let delay = delay.unwrap_or_default();
        let politeness = (per_host.is_some() || !delay.is_zero()).then(|| Politeness {
            per_host,
            delay,
            hosts: RefCell::default(),
        });
        MemoryFrontier {
            queue: Queue::new(),
            seen: RefCell::default(),
            outstanding: Cell::new(0),
            politeness,
        }
    }
}

impl Politeness {
    fn gate(&self, host: String) -> Rc<HostGate> {
        self.hosts
            .borrow_mut()
            .entry(host)
            .or_insert_with(|| {
                Rc::new(HostGate {
                    in_flight: Semaphore::new(self.per_host.unwrap_or(usize::MAX >> 1)),
                    next_start: Cell::new(Instant::now()),
                })
            })
            .clone()
    }

    fn enter(&self, item: &Item) {
        let gate = self.gate(host_key(&item.url));
        gate.in_flight.acquire().forget();
        if !self.delay.is_zero() {
            let now = Instant::now();
            let start = gate.next_start.get().max(now);
            gate.next_start.set(start + self.delay);
            if start > now {
                green_runtime::sleep(start - now);
            }
        }
    }

    fn leave(&self, item: &Item) {
        self.gate(host_key(&item.url)).in_flight.release();
    }
}

impl Frontier for MemoryFrontier {
    fn push(&self, items: Vec<Item>) -> io::Result<u64> {
        let mut new = 0;
        let mut seen = self.seen.borrow_mut();
        for item in items {
            if seen.insert(item.url.as_str().to_string()) {
                self.queue.put(item);
                new += 1;
            }
        }
        self.outstanding.set(self.outstanding.get() + new);
        Ok(new)
    }

    fn claim(&self) -> io::Result<Option<Item>> {
        if self.outstanding.get() == 0 {
            return Ok(None);
        }
        let Ok(item) = self.queue.get_checked() else {
            return Ok(None);
        };
        if let Some(politeness) = &self.politeness {
            politeness.enter(&item);
        }
        Ok(Some(item))
    }

    fn complete(&self, item: &Item, _outcome: &Outcome, links: Vec<Item>) -> io::Result<u64> {
        if let Some(politeness) = &self.politeness {
            politeness.leave(item);
        }
        let new = if links.is_empty() {
            0
        } else {
            self.push(links)?
        };
        let left = self.outstanding.get().saturating_sub(1);
        self.outstanding.set(left);
        if left == 0 {
            // Wakes every worker waiting for a URL: there will be none.
            self.queue.shutdown(false);
        }
        Ok(new)
    }

    fn robots_txt(&self, _origin: &str, fetch: &mut dyn FnMut() -> String) -> io::Result<String> {
        Ok(fetch())
    }
}
