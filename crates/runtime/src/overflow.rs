//! Stack-overflow reports: a SIGSEGV/SIGBUS handler that recognises a greenlet guard page.
//!
//! A greenlet that overflows its stack touches the guard page below it. The handler runs on an
//! alternate signal stack (the faulting stack is exhausted), looks the fault address up in the slab
//! table published by `stack.rs` (lock-free, async-signal-safe), and if it is a guard page prints
//! which greenlet overflowed and how to raise the limit, then aborts. Any other fault goes to the
//! handler installed before ours (std's own stack-overflow reporter, or the default action).

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::Once;

use crate::stack::{page_size, SLABS, SLAB_COUNT};

static mut PREVIOUS_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();
static mut PREVIOUS_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();

/// Installs the handler once per process.
pub(crate) fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: runs once, before any greenlet stack exists, so no fault can observe the
        // PREVIOUS_* statics half-written; sigaction is given valid pointers.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handle_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(
                libc::SIGSEGV,
                &action,
                std::ptr::addr_of_mut!(PREVIOUS_SEGV).cast(),
            );
            libc::sigaction(
                libc::SIGBUS,
                &action,
                std::ptr::addr_of_mut!(PREVIOUS_BUS).cast(),
            );
        }
    });
    ensure_alt_stack();
}

thread_local! {
    static ALT_STACK_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Makes sure this thread has an alternate signal stack (std gives its own threads one; threads
/// created by foreign code may lack it). The stack is leaked deliberately: it must outlive any
/// signal the thread may take.
pub(crate) fn ensure_alt_stack() {
    if ALT_STACK_CHECKED.with(|c| c.replace(true)) {
        return;
    }
    // SAFETY: sigaltstack with a null new stack only reads the current setting.
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut current) != 0 {
            return;
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return;
        }
        let size = 64 * 1024;
        let mem = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return;
        }
        let stack = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&stack, std::ptr::null_mut());
    }
}

/// Usable stack size in bytes of the slab slot whose guard page holds `addr`, if any.
fn guard_page_stack_size(addr: usize) -> Option<usize> {
    let page = page_size();
    let count = SLAB_COUNT.load(Ordering::Acquire);
    for record in &SLABS[..count] {
        let base = record.base.load(Ordering::Relaxed);
        let len = record.len.load(Ordering::Relaxed);
        if addr >= base && addr < base + len {
            let slot_size = record.slot_size.load(Ordering::Relaxed);
            let offset = (addr - base) % slot_size;
            return (offset < page).then_some(slot_size - page);
        }
    }
    None
}

/// A fixed buffer for composing the report without allocating (we are in a signal handler).
struct Report {
    buf: [u8; 512],
    len: usize,
}

impl Report {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

extern "C" fn handle_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(stack_size) = guard_page_stack_size(addr) {
        let mut report = Report {
            buf: [0; 512],
            len: 0,
        };
        report.push(b"greenlet '");
        crate::greenlet::write_current_name_for_signal(&mut |bytes| report.push(bytes));
        report.push(b"' overflowed its ");
        report.push_number(stack_size / 1024);
        report.push(b" KiB stack; raise it with Builder::stack_size or GREEN_STACK_SIZE\n");
        // SAFETY: the write system call and abort(3) are async-signal-safe; the buffer is valid
        // for `len` bytes. The raw system call, because green-patch may interpose `write`.
        unsafe {
            libc::syscall(libc::SYS_write, 2, report.buf.as_ptr(), report.len);
            libc::abort();
        }
    }
    // SAFETY: PREVIOUS_* were written once by install_handler before this handler could run.
    unsafe {
        let previous = if signal == libc::SIGBUS {
            &*std::ptr::addr_of!(PREVIOUS_BUS).cast::<libc::sigaction>()
        } else {
            &*std::ptr::addr_of!(PREVIOUS_SEGV).cast::<libc::sigaction>()
        };
        if previous.sa_sigaction == libc::SIG_DFL || previous.sa_sigaction == libc::SIG_IGN {
            // Restore the default action and return: the faulting instruction runs again and the
            // kernel delivers the signal with its default effect.
            libc::sigaction(signal, previous, std::ptr::null_mut());
        } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(previous.sa_sigaction);
            handler(signal, info, context);
        } else {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(previous.sa_sigaction);
            handler(signal);
        }
    }
}
