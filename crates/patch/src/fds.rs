//! The per-fd record that keeps the user's view of each socket while green makes it non-blocking
//! underneath (libco's and libgo's design): whether the user asked for non-blocking I/O, whether
//! green set `O_NONBLOCK` behind the user's back, and the `SO_RCVTIMEO`/`SO_SNDTIMEO` the user set.
//!
//! Records live in a two-level table indexed by fd number (chunks allocated on first use and never
//! freed), so a lookup is two loads with no lock. A record is reset when its fd number is handed
//! out again (`socket`, `accept`, `dup`) or closed through the hooks; each reset bumps a
//! generation that tells the hub a reused fd number is a new socket.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use libc::c_int;

const CHUNK: usize = 1024;
const CHUNKS: usize = 1024;

/// Not yet looked at.
pub(crate) const UNKNOWN: u32 = 0;
/// Not a socket (a file, a pipe, a terminal): never made green.
pub(crate) const OTHER: u32 = 1;
/// A socket.
pub(crate) const SOCKET: u32 = 2;
const KIND: u32 = 0b11;
/// The user asked for non-blocking I/O (`SOCK_NONBLOCK`, `O_NONBLOCK`, `FIONBIO`).
pub(crate) const USER_NONBLOCK: u32 = 0b100;
/// Green set `O_NONBLOCK` on the socket although the user did not ask for it.
pub(crate) const GREEN_NONBLOCK: u32 = 0b1000;

/// What green knows of one fd number.
#[derive(Debug)]
pub(crate) struct Record {
    state: AtomicU32,
    generation: AtomicU32,
    /// `SO_RCVTIMEO` in nanoseconds, 0 for none.
    read_timeout: AtomicU64,
    /// `SO_SNDTIMEO` in nanoseconds, 0 for none.
    write_timeout: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_CHUNK: AtomicPtr<Record> = AtomicPtr::new(std::ptr::null_mut());
static TABLE: [AtomicPtr<Record>; CHUNKS] = [NO_CHUNK; CHUNKS];

fn index(fd: c_int) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok()?;
    let chunk = fd / CHUNK;
    (chunk < CHUNKS).then_some((chunk, fd % CHUNK))
}

/// The record of `fd` if its chunk exists (never allocates).
#[inline]
pub(crate) fn peek(fd: c_int) -> Option<&'static Record> {
    let (chunk, offset) = index(fd)?;
    let records = TABLE[chunk].load(Ordering::Acquire);
    if records.is_null() {
        return None;
    }
    // SAFETY: a published chunk is an allocation of CHUNK records that is never freed.
    Some(unsafe { &*records.add(offset) })
}

/// The record of `fd`, allocating its chunk on first use; `None` for fd numbers out of range.
pub(crate) fn record(fd: c_int) -> Option<&'static Record> {
    if let Some(record) = peek(fd) {
        return Some(record);
    }
    let (chunk, _) = index(fd)?;
    let fresh: Box<[Record]> = (0..CHUNK)
        .map(|_| Record {
            state: AtomicU32::new(UNKNOWN),
            generation: AtomicU32::new(0),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
        })
        .collect();
    let fresh = Box::into_raw(fresh).cast::<Record>();
    if TABLE[chunk]
        .compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: `fresh` came from `Box::into_raw` of a CHUNK-long slice just above and was not
        // published (another thread's chunk won).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, CHUNK)) });
    }
    peek(fd)
}

impl Record {
    #[inline]
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Ordering::Relaxed)
    }

    pub(crate) fn set_state(&self, state: u32) {
        self.state.store(state, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_socket(&self) -> bool {
        self.state() & KIND == SOCKET
    }

    /// Green made this socket non-blocking and the user expects it to block.
    #[inline]
    pub(crate) fn blocking_emulated(&self) -> bool {
        self.state() & (KIND | GREEN_NONBLOCK | USER_NONBLOCK) == SOCKET | GREEN_NONBLOCK
    }

    /// Starts a new life for this fd number: a fresh socket (or, with `state` UNKNOWN, nothing).
    pub(crate) fn reset(&self, state: u32) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.read_timeout.store(0, Ordering::Relaxed);
        self.write_timeout.store(0, Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
    }

    /// Makes this record a copy of `other` (a `dup` of it).
    pub(crate) fn copy_from(&self, other: &Record) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.read_timeout.store(
            other.read_timeout.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.write_timeout.store(
            other.write_timeout.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.state.store(other.state(), Ordering::Relaxed);
    }

    /// Identifies this life of the fd number to the hub (never 0).
    pub(crate) fn source(&self, fd: c_int) -> u64 {
        (1 << 63)
            | (u64::from(self.generation.load(Ordering::Relaxed)) << 24)
            | (fd as u64 & 0xff_ffff)
    }

    pub(crate) fn timeout(&self, write: bool) -> Option<Duration> {
        let slot = if write {
            &self.write_timeout
        } else {
            &self.read_timeout
        };
        match slot.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    pub(crate) fn set_timeout(&self, write: bool, timeout: Duration) {
        let nanos = timeout.as_nanos().min(u64::MAX as u128) as u64;
        let slot = if write {
            &self.write_timeout
        } else {
            &self.read_timeout
        };
        slot.store(nanos, Ordering::Relaxed);
    }

    /// Sets or clears the user's non-blocking wish, keeping the rest.
    pub(crate) fn set_user_nonblocking(&self, nonblocking: bool) {
        if nonblocking {
            self.state.fetch_or(USER_NONBLOCK, Ordering::Relaxed);
        } else {
            self.state.fetch_and(!USER_NONBLOCK, Ordering::Relaxed);
        }
    }
}

/// Looks at an fd a greenlet is about to use: records whether it is a socket and, for a socket
/// the user keeps blocking, sets `O_NONBLOCK` underneath. Returns the record's state.
pub(crate) fn classify(fd: c_int, record: &Record) -> u32 {
    let state = record.state();
    match state & KIND {
        OTHER => return state,
        SOCKET if state & (USER_NONBLOCK | GREEN_NONBLOCK) != 0 => return state,
        SOCKET => {}
        _ => {
            // SAFETY: fstat on any fd number only writes the buffer it is given.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            let is_socket = unsafe { libc::fstat(fd, &mut stat) } == 0
                && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK;
            if !is_socket {
                record.set_state(OTHER);
                return OTHER;
            }
        }
    }
    // SAFETY: F_GETFL/F_SETFL on an fd take and return plain integers.
    let flags = unsafe { crate::real::fcntl(fd, libc::F_GETFL, 0) };
    let state = if flags < 0 {
        OTHER
    } else if flags & libc::O_NONBLOCK != 0 {
        SOCKET | USER_NONBLOCK
    } else if unsafe {
        crate::real::fcntl(
            fd,
            libc::F_SETFL,
            (flags | libc::O_NONBLOCK) as libc::c_ulong,
        )
    } == 0
    {
        SOCKET | GREEN_NONBLOCK
    } else {
        OTHER
    };
    record.set_state(state);
    state
}
