//! The sleep hooks: inside a greenlet, a sleep parks only the greenlet. A kill or timeout that
//! lands during it ends the sleep early, reported as a completed sleep (std's `thread::sleep`
//! retries an interrupted one): the throw itself lands at the next green switch point.

use std::time::Duration;

use libc::{c_int, c_uint, clockid_t, timespec, useconds_t};

use green_runtime::foreign;

use crate::{enabled, real, set_errno};

/// A valid `timespec` as a duration (`None`: negative, or nanoseconds out of range: EINVAL).
pub(crate) fn duration_of(request: &timespec) -> Option<Duration> {
    if request.tv_sec < 0 || !(0..1_000_000_000).contains(&request.tv_nsec) {
        return None;
    }
    Some(Duration::new(request.tv_sec as u64, request.tv_nsec as u32))
}

fn green_sleep(duration: Duration) {
    let _ = crate::io::green_sleep(duration);
}

fn zero(remain: *mut timespec) {
    if !remain.is_null() {
        // SAFETY: the caller passed a writable timespec for the time left.
        unsafe {
            *remain = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        };
    }
}

/// # Safety
/// libc's `nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(request: *const timespec, remain: *mut timespec) -> c_int {
    if !enabled() || request.is_null() || !foreign::in_greenlet() {
        return unsafe { real::nanosleep(request, remain) };
    }
    // SAFETY: checked non-null; the caller's timespec.
    let Some(duration) = duration_of(unsafe { &*request }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    green_sleep(duration);
    zero(remain);
    0
}

/// # Safety
/// libc's `clock_nanosleep` (returns an error number, not -1 and errno).
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    request: *const timespec,
    remain: *mut timespec,
) -> c_int {
    let wall_clock = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_TAI
    );
    if !enabled() || request.is_null() || !wall_clock || !foreign::in_greenlet() {
        return unsafe { real::clock_nanosleep(clock, flags, request, remain) };
    }
    // SAFETY: checked non-null; the caller's timespec.
    let request = unsafe { &*request };
    let Some(mut duration) = duration_of(request) else {
        return libc::EINVAL;
    };
    if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes the current time of a clock that exists into `now`.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return libc::EINVAL;
        }
        let now = duration_of(&now).unwrap_or_default();
        duration = duration.saturating_sub(now);
    }
    green_sleep(duration);
    if flags & libc::TIMER_ABSTIME == 0 {
        zero(remain);
    }
    0
}

/// # Safety
/// libc's `usleep`.
#[no_mangle]
pub unsafe extern "C" fn usleep(micros: useconds_t) -> c_int {
    if !enabled() || !foreign::in_greenlet() {
        return unsafe { real::usleep(micros) };
    }
    green_sleep(Duration::from_micros(u64::from(micros)));
    0
}

/// # Safety
/// libc's `sleep`.
#[no_mangle]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    if !enabled() || !foreign::in_greenlet() {
        return unsafe { real::sleep(seconds) };
    }
    green_sleep(Duration::from_secs(u64::from(seconds)));
    0
}

/// `sched_yield` (std's `thread::yield_now`): inside a greenlet, gevent's `sleep(0)` — the other
/// ready greenlets run first.
///
/// # Safety
/// libc's `sched_yield`.
#[no_mangle]
pub unsafe extern "C" fn sched_yield() -> c_int {
    if !enabled() || !foreign::in_greenlet() {
        return unsafe { real::sched_yield() };
    }
    let _ = foreign::catch_throw(green_runtime::yield_now);
    0
}
