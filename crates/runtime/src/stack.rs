//! Guarded greenlet stacks carved from large `MAP_NORESERVE` slabs, recycled through a pool.
//!
//! corosensei's `DefaultStack` maps every stack separately (guard + RW = two kernel mappings), which
//! caps a process near 32,700 live greenlets (`vm.max_map_count` = 65,530) and costs ~8 µs of
//! mmap/mprotect/munmap per fresh stack. Here a slab of many stack slots is one mapping; each slot's
//! lowest page becomes a guard page through `madvise(MADV_GUARD_INSTALL)` (Linux ≥ 6.13), which
//! adds no mapping. Older kernels fall back to `mprotect(PROT_NONE)` guards (one extra mapping per
//! stack), which is said once on stderr. Guards are installed 64 slots ahead with one
//! `process_madvise(PIDFD_SELF)` call (Linux ≥ 6.15; one `madvise` per slot before that): a
//! system call per stack cost as much as the kernel's work on the guard itself.
//!
//! Freed stacks go to a per-thread pool (a hub never shares greenlets with another thread). The pool
//! keeps the most recently used stacks hot; when it grows large the oldest are handed back to the
//! kernel with `MADV_DONTNEED`, coalesced over neighbouring slots and batched up to 1024 ranges per
//! `process_madvise` call, so that freeing a million stacks costs a few thousand system calls, not
//! a million. Stacks left in a pool when its thread exits move
//! to a process-wide pool.
//!
//! This module and `overflow.rs` hold the crate's memory-mapping `unsafe`.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use corosensei::stack::{Stack, StackPointer};

/// `madvise` advice that installs a guard marker (Linux ≥ 6.13); not yet in the `libc` crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `process_madvise` target meaning the calling thread's own address space (`PIDFD_SELF`,
/// Linux ≥ 6.15); not yet in the `libc` crate.
const PIDFD_SELF: libc::c_int = -10_000;

/// Slots whose guard pages are installed together by one system call.
const GUARD_BATCH: usize = 64;

/// Most ranges one `process_madvise` call accepts (`UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Set once `process_madvise` on `PIDFD_SELF` has failed: ranges are then advised one by one.
static BATCH_ADVICE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Default usable stack size in bytes (see the crate docs for how it was measured).
pub const DEFAULT_STACK_SIZE: usize = 512 * 1024;

/// Smallest usable stack size accepted by [`crate::Builder::stack_size`].
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// Largest slab mapping; slabs double from `FIRST_SLAB_SLOTS` slots up to this size.
const MAX_SLAB_BYTES: usize = 1 << 30;
const FIRST_SLAB_SLOTS: usize = 64;

/// Stacks kept hot in a thread's pool before the oldest are returned to the kernel.
const HOT_HIGH_WATER: usize = 1024;
/// Hot stacks kept when trimming.
const HOT_KEEP: usize = 256;

/// Maximum number of slabs the overflow handler can recognise.
pub(crate) const MAX_SLABS: usize = 8192;

pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// Rounds a requested stack size to whole pages, at least [`MIN_STACK_SIZE`].
pub(crate) fn round_stack_size(size: usize) -> usize {
    let page = page_size();
    size.max(MIN_STACK_SIZE).div_ceil(page) * page
}

/// The stack size used when a builder does not set one: `GREEN_STACK_SIZE` (bytes, or with a
/// `k`/`K`/`m`/`M` suffix) or [`DEFAULT_STACK_SIZE`].
#[inline]
pub(crate) fn default_stack_size() -> usize {
    let cached = DEFAULT_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    read_default_stack_size()
}

/// [`default_stack_size`], once it has been read.
static DEFAULT_SIZE: AtomicUsize = AtomicUsize::new(0);

#[cold]
fn read_default_stack_size() -> usize {
    let size = std::env::var("GREEN_STACK_SIZE")
        .ok()
        .and_then(|v| parse_size(&v))
        .map(round_stack_size)
        .unwrap_or(DEFAULT_STACK_SIZE);
    DEFAULT_SIZE.store(size, Ordering::Relaxed);
    size
}

fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(unit)
}

/// Bytes left below the caller's frame when trimming: the `madvise` call's own frame.
const TRIM_MARGIN: usize = 512;

/// Gives the kernel back the pages of the slab stack the caller runs on that lie wholly below
/// its frame (see [`crate::trim_stack`]); they read as zeros if touched again. Returns the bytes
/// released (0 outside every slab: a root context on its thread's own stack).
#[inline(never)]
pub(crate) fn release_below_caller() -> usize {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let page = page_size();
    let count = SLAB_COUNT.load(Ordering::Acquire).min(MAX_SLABS);
    let Some(record) = SLABS[..count].iter().find(|r| {
        let base = r.base.load(Ordering::Relaxed);
        sp >= base && sp < base + r.len.load(Ordering::Relaxed)
    }) else {
        return 0;
    };
    let base = record.base.load(Ordering::Relaxed);
    let slot_size = record.slot_size.load(Ordering::Relaxed);
    let limit = base + (sp - base) / slot_size * slot_size + page;
    let end = sp.saturating_sub(TRIM_MARGIN) / page * page;
    if end <= limit {
        return 0;
    }
    // SAFETY: [limit, end) lies inside this stack's usable range (above its guard page) and
    // below the running frame: the stack grows down and only this context runs on it, so no live
    // data is there; MADV_DONTNEED on private anonymous memory leaves it mapped and zero-filled.
    let result =
        unsafe { libc::madvise(limit as *mut libc::c_void, end - limit, libc::MADV_DONTNEED) };
    if result == 0 {
        end - limit
    } else {
        0
    }
}

/// A slab's address range, published for the overflow handler (which may not take locks).
pub(crate) struct SlabRecord {
    pub(crate) base: AtomicUsize,
    pub(crate) len: AtomicUsize,
    pub(crate) slot_size: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_RECORD: SlabRecord = SlabRecord {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_size: AtomicUsize::new(0),
};
pub(crate) static SLABS: [SlabRecord; MAX_SLABS] = [EMPTY_RECORD; MAX_SLABS];
pub(crate) static SLAB_COUNT: AtomicUsize = AtomicUsize::new(0);

static GUARD_FALLBACK: AtomicBool = AtomicBool::new(false);

/// Whether guard pages are installed with `mprotect` (kernels older than 6.13) instead of
/// `MADV_GUARD_INSTALL`.
pub fn uses_mprotect_guards() -> bool {
    GUARD_FALLBACK.load(Ordering::Relaxed)
}

/// A slab being carved into stacks of one size.
struct Carver {
    slot_size: usize,
    next: usize,
    end: usize,
    /// Slots below this address already have their guard page.
    guarded_to: usize,
    slots_next_slab: usize,
}

/// Stacks of one size shared by all threads: carving state and stacks freed by exited threads.
struct SizeClass {
    carver: Carver,
    orphans: Vec<SlabStack>,
}

static GLOBAL: Mutex<Vec<SizeClass>> = Mutex::new(Vec::new());

/// One greenlet stack: a slot of a slab, the guard page at its low end.
#[derive(Debug)]
pub struct SlabStack {
    /// Lowest address of the slot (the guard page).
    slot: usize,
    /// Slot size including the guard page.
    slot_size: usize,
}

impl SlabStack {
    /// Usable bytes of this stack.
    pub fn usable_size(&self) -> usize {
        self.slot_size - page_size()
    }

    /// Takes a stack of `usable` bytes (already page-rounded) from this thread's pool, the
    /// process-wide pool, or a fresh slab slot.
    #[inline]
    pub fn take(usable: usize) -> io::Result<SlabStack> {
        let slot_size = usable + page_size();
        if let Some(stack) = POOL.with(|pool| pool.borrow_mut().pop(slot_size)) {
            return Ok(stack);
        }
        take_global(slot_size)
    }

    /// Returns this stack to the thread's pool.
    pub fn recycle(self) {
        // During thread teardown the pool may be gone; the slot is then leaked.
        let _ = POOL.try_with(|pool| pool.borrow_mut().push(self));
    }
}

// SAFETY: base/limit describe a readable, writable region owned exclusively by this value; the guard
// page below `limit` is never handed out as stack memory.
unsafe impl Stack for SlabStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.slot + self.slot_size).expect("stack slot is never at address 0")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.slot + page_size()).expect("stack slot is never at address 0")
    }
}

fn take_global(slot_size: usize) -> io::Result<SlabStack> {
    let mut classes = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = match classes.iter().position(|c| c.carver.slot_size == slot_size) {
        Some(index) => index,
        None => {
            classes.push(SizeClass {
                carver: Carver {
                    slot_size,
                    next: 0,
                    end: 0,
                    guarded_to: 0,
                    slots_next_slab: FIRST_SLAB_SLOTS,
                },
                orphans: Vec::new(),
            });
            classes.len() - 1
        }
    };
    let class = &mut classes[index];
    if let Some(stack) = class.orphans.pop() {
        return Ok(stack);
    }
    class.carver.carve()
}

impl Carver {
    fn carve(&mut self) -> io::Result<SlabStack> {
        if self.next == self.end {
            self.new_slab()?;
        }
        let slot = self.next;
        self.next += self.slot_size;
        if slot >= self.guarded_to {
            self.guard_ahead(slot);
        }
        if slot >= self.guarded_to {
            install_guard(slot)?;
        }
        Ok(SlabStack {
            slot,
            slot_size: self.slot_size,
        })
    }

    /// Installs the guard pages of the next [`GUARD_BATCH`] slots from `from` with one system call
    /// where the kernel allows it (a guard costs ~1 µs of kernel work either way, but one
    /// `madvise` per stack doubled that); slots left unguarded get theirs from [`install_guard`].
    fn guard_ahead(&mut self, from: usize) {
        if GUARD_FALLBACK.load(Ordering::Relaxed) {
            return;
        }
        let count = ((self.end - from) / self.slot_size).min(GUARD_BATCH);
        let mut ranges = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; GUARD_BATCH];
        for (i, range) in ranges.iter_mut().take(count).enumerate() {
            range.iov_base = (from + i * self.slot_size) as *mut libc::c_void;
            range.iov_len = page_size();
        }
        let done = advise_batch(&ranges[..count], MADV_GUARD_INSTALL);
        self.guarded_to = from + done * self.slot_size;
    }

    fn new_slab(&mut self) -> io::Result<()> {
        crate::overflow::install_handler();
        let slots = self
            .slots_next_slab
            .min((MAX_SLAB_BYTES / self.slot_size).max(1));
        let len = slots * self.slot_size;
        // SAFETY: an anonymous private mapping at a kernel-chosen address; no existing memory is
        // affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let index = SLAB_COUNT.load(Ordering::Acquire);
        if index < MAX_SLABS {
            let record = &SLABS[index];
            record.base.store(base as usize, Ordering::Relaxed);
            record.len.store(len, Ordering::Relaxed);
            record.slot_size.store(self.slot_size, Ordering::Relaxed);
            SLAB_COUNT.store(index + 1, Ordering::Release);
        }
        self.next = base as usize;
        self.end = base as usize + len;
        self.guarded_to = base as usize;
        self.slots_next_slab = (slots * 2).min(MAX_SLAB_BYTES / self.slot_size).max(1);
        Ok(())
    }
}

fn install_guard(slot: usize) -> io::Result<()> {
    static WARN: Once = Once::new();
    let page = page_size();
    if !GUARD_FALLBACK.load(Ordering::Relaxed) {
        // SAFETY: `slot` is the first page of a slot inside a live slab mapping owned by us.
        let rc = unsafe { libc::madvise(slot as *mut libc::c_void, page, MADV_GUARD_INSTALL) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
        GUARD_FALLBACK.store(true, Ordering::Relaxed);
        WARN.call_once(|| {
            log::warn!(
                "this kernel lacks MADV_GUARD_INSTALL (Linux >= 6.13); greenlet stack guard \
                 pages use mprotect, one extra kernel mapping per stack (vm.max_map_count limits \
                 live greenlets to about half its value)"
            );
        });
    }
    // SAFETY: as above; the guard page is never used as stack memory.
    let rc = unsafe { libc::mprotect(slot as *mut libc::c_void, page, libc::PROT_NONE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Applies `advice` to the leading `ranges` (at most [`IOV_MAX`]) with one `process_madvise` call
/// (Linux ≥ 6.15 takes any advice for the caller's own address space through `PIDFD_SELF`);
/// returns how many leading ranges were advised: none where the kernel refuses, and then the
/// caller advises them one by one with `madvise`.
fn advise_batch(ranges: &[libc::iovec], advice: libc::c_int) -> usize {
    if ranges.is_empty() || BATCH_ADVICE_UNSUPPORTED.load(Ordering::Relaxed) {
        return 0;
    }
    let ranges = &ranges[..ranges.len().min(IOV_MAX)];
    // SAFETY: every range lies in a slab mapping owned by this module, and the callers only pass
    // advice that is harmless there (guard markers on guard pages, MADV_DONTNEED on free stacks);
    // the kernel only reads the iovec array.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            PIDFD_SELF,
            ranges.as_ptr(),
            ranges.len(),
            advice,
            0u32,
        )
    };
    if rc < 0 {
        BATCH_ADVICE_UNSUPPORTED.store(true, Ordering::Relaxed);
        return 0;
    }
    // A partial result counts the bytes advised in order: count the ranges fully covered.
    let mut left = rc as usize;
    let mut done = 0;
    for range in ranges {
        if left < range.iov_len {
            break;
        }
        left -= range.iov_len;
        done += 1;
    }
    done
}

/// Gives the pages of the given stacks back to the kernel: one range per run of adjacent slots,
/// up to [`IOV_MAX`] ranges per system call.
fn release_pages(stacks: &mut [SlabStack]) {
    stacks.sort_unstable_by_key(|s| s.slot);
    let page = page_size();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < stacks.len() {
        let start = stacks[i].slot + page;
        let mut end = stacks[i].slot + stacks[i].slot_size;
        let mut j = i + 1;
        while j < stacks.len()
            && stacks[j].slot == end
            && stacks[j].slot_size == stacks[i].slot_size
        {
            end = stacks[j].slot + stacks[j].slot_size;
            j += 1;
        }
        ranges.push(libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: end - start,
        });
        i = j;
    }
    let mut done = 0;
    while done < ranges.len() {
        let advised = advise_batch(&ranges[done..], libc::MADV_DONTNEED);
        if advised == 0 {
            break;
        }
        done += advised;
    }
    for range in &ranges[done..] {
        // SAFETY: the range covers whole free slots we own; guard markers (and mprotect guards)
        // survive MADV_DONTNEED, and the usable pages simply read back as zeroes.
        unsafe {
            libc::madvise(range.iov_base, range.iov_len, libc::MADV_DONTNEED);
        }
    }
}

/// A thread's free stacks: `hot` in LIFO order (the last pushed is the most recently used),
/// `cold` already handed back to the kernel.
#[derive(Default)]
struct Pool {
    hot: Vec<SlabStack>,
    cold: Vec<SlabStack>,
}

impl Pool {
    #[inline]
    fn pop(&mut self, slot_size: usize) -> Option<SlabStack> {
        for list in [&mut self.hot, &mut self.cold] {
            if let Some(last) = list.last() {
                if last.slot_size == slot_size {
                    return list.pop();
                }
                if let Some(pos) = list.iter().rposition(|s| s.slot_size == slot_size) {
                    return Some(list.swap_remove(pos));
                }
            }
        }
        None
    }

    fn push(&mut self, stack: SlabStack) {
        self.hot.push(stack);
        if self.hot.len() > HOT_HIGH_WATER {
            let mut oldest: Vec<SlabStack> = self.hot.drain(..self.hot.len() - HOT_KEEP).collect();
            release_pages(&mut oldest);
            self.cold.extend(oldest);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut all: Vec<SlabStack> = self.hot.drain(..).chain(self.cold.drain(..)).collect();
        release_pages(&mut all);
        let mut classes = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        for stack in all {
            if let Some(class) = classes
                .iter_mut()
                .find(|c| c.carver.slot_size == stack.slot_size)
            {
                class.orphans.push(stack);
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            hot: Vec::new(),
            cold: Vec::new(),
        })
    };
}

/// Stacks currently in this thread's pool (hot, cold).
pub fn pooled_stacks() -> (usize, usize) {
    POOL.with(|p| {
        let p = p.borrow();
        (p.hot.len(), p.cold.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_accepts_suffixes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn recycled_stack_is_reused() {
        let a = SlabStack::take(round_stack_size(64 * 1024)).unwrap();
        let slot = a.slot;
        a.recycle();
        let b = SlabStack::take(round_stack_size(64 * 1024)).unwrap();
        assert_eq!(b.slot, slot);
        b.recycle();
    }
}
