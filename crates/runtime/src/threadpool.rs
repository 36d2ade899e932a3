//! A bounded, process-wide thread pool for blocking or CPU-bound work (gevent's threadpool).
//!
//! A greenlet that calls a blocking foreign function holds up every greenlet on its hub.
//! [`spawn_blocking`] moves such a call to a pool thread; joining its [`BlockingHandle`] parks
//! only the calling greenlet, and the job's completion wakes it through its hub's
//! [`ThreadsafeWaker`](crate::ThreadsafeWaker).
//!
//! ```
//! let job = green_runtime::spawn_blocking(|| (1..=10u64).product::<u64>());
//! assert_eq!(job.join().unwrap(), 3_628_800);
//! ```
//!
//! # Implementation
//!
//! One pool serves every hub of the process. It holds at most [`max_threads`] threads:
//! `GREEN_THREADPOOL_SIZE` if set to a positive number (read once, at the first use), otherwise
//! `max(4, 2 × available cores)`. Threads are started on demand, only when every existing thread
//! is busy, and one that has been idle for 10 seconds exits. Jobs beyond the bound wait in a
//! FIFO queue. A job's panic is caught and handed to whoever joins it; pool threads never die
//! of it.
//!
//! # Caveats
//!
//! * Killing (or timing out) a greenlet that waits in `join` does not cancel the job: it runs to
//!   completion on its pool thread and its result is dropped there.
//! * A job that itself waits for other pool jobs can starve the pool once every thread does so.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use crate::greenlet::JoinError;
use crate::xchan::{
    join_result, join_result_timeout, lock, wait_until, wake_all, WaitState, WakerList,
};

/// How long a pool thread waits for work before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    next_id: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    max: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState {
            queue: VecDeque::new(),
            threads: 0,
            idle: 0,
            next_id: 0,
        }),
        work: Condvar::new(),
        max: size_from_env(),
    })
}

fn size_from_env() -> usize {
    let default = thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .max(4);
    match std::env::var("GREEN_THREADPOOL_SIZE") {
        Err(_) => default,
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                log::warn!(
                    "ignoring GREEN_THREADPOOL_SIZE={value:?} (expected a positive \
                     integer); using {default}"
                );
                default
            }
        },
    }
}

/// The most threads the pool runs at once (`GREEN_THREADPOOL_SIZE`, read once).
pub fn max_threads() -> usize {
    pool().max
}

/// The pool threads alive right now, busy or idle.
pub fn thread_count() -> usize {
    lock(&pool().state).threads
}

impl Pool {
    fn submit(&'static self, job: Job) {
        let mut state = lock(&self.state);
        state.queue.push_back(job);
        let spawn = state.queue.len() > state.idle && state.threads < self.max;
        let id = state.next_id;
        if spawn {
            state.threads += 1;
            state.next_id += 1;
        }
        drop(state);
        self.work.notify_one();
        if !spawn {
            return;
        }
        let started = thread::Builder::new()
            .name(format!("green-blocking-{id}"))
            .spawn(move || self.work_loop());
        if let Err(err) = started {
            let mut state = lock(&self.state);
            state.threads -= 1;
            if state.threads > 0 {
                return;
            }
            // No thread can take the queued jobs: run them here rather than lose them.
            log::error!("cannot start a thread-pool thread ({err}); running the job inline");
            let jobs = std::mem::take(&mut state.queue);
            drop(state);
            for job in jobs {
                job();
            }
        }
    }

    fn work_loop(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // Jobs catch their own panics; this only guards against a result's destructor.
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = lock(&self.state);
                continue;
            }
            state.idle += 1;
            let (guard, wait) = self
                .work
                .wait_timeout(state, KEEP_ALIVE)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            state.idle -= 1;
            if wait.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

struct Slot<T> {
    result: Option<thread::Result<T>>,
    done: bool,
    waiters: WakerList,
}

impl<T> WaitState for Slot<T> {
    fn waiters(&mut self) -> &mut WakerList {
        &mut self.waiters
    }
}

/// Runs `f` on the thread pool and returns a handle to its result.
///
/// The job starts at once if a pool thread is free (or may be started), otherwise when one
/// frees up. Dropping the handle detaches the job: it still runs, its result is dropped.
pub fn spawn_blocking<T, F>(f: F) -> BlockingHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        done: false,
        waiters: WakerList::default(),
    }));
    let job_slot = slot.clone();
    pool().submit(Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(f));
        let mut slot = lock(&job_slot);
        slot.result = Some(result);
        slot.done = true;
        let wakers = slot.waiters.take();
        drop(slot);
        wake_all(wakers);
    }));
    BlockingHandle { slot }
}

/// The result of a [`spawn_blocking`] job, to be joined from a greenlet or any thread.
///
/// `Send`: it may be joined on another thread than the one that spawned the job.
pub struct BlockingHandle<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandle")
            .field("ready", &self.is_ready())
            .finish()
    }
}

fn take_result<T>(slot: &mut Slot<T>) -> Option<Result<T, JoinError>> {
    if !slot.done {
        return None;
    }
    Some(match slot.result.take() {
        Some(Ok(value)) => Ok(value),
        Some(Err(payload)) => Err(JoinError::Panicked(payload)),
        None => Err(JoinError::AlreadyJoined),
    })
}

impl<T> BlockingHandle<T> {
    /// A closure that blocks until the job has finished, without taking its result (what
    /// [`iwait`](crate::iwait)'s watcher runs).
    pub(crate) fn until_done(&self) -> impl FnOnce() + 'static
    where
        T: Send + 'static,
    {
        let slot = self.slot.clone();
        move || {
            // Run by a watcher greenlet, whose wait is never a root context's deadlock.
            let _ = wait_until(&slot, None, |slot| slot.done.then_some(()));
        }
    }

    /// Whether the job has finished (returned or panicked).
    pub fn is_ready(&self) -> bool {
        lock(&self.slot).done
    }

    /// Blocks the calling greenlet (not its thread) until the job finishes and returns its value;
    /// `Err(JoinError::Panicked(payload))` if it panicked.
    pub fn join(self) -> Result<T, JoinError> {
        join_result(&self.slot, take_result)
    }

    /// Waits at most `timeout`; `None` if the job is still running (the handle stays usable).
    /// After a result was returned, later calls give `Err(JoinError::AlreadyJoined)`.
    pub fn join_timeout(&self, timeout: Duration) -> Option<Result<T, JoinError>> {
        join_result_timeout(&self.slot, timeout, take_result)
    }
}
