//! `getaddrinfo` and `getnameinfo` inside a greenlet.
//!
//! `getaddrinfo` of a host name uses green's resolver (its hosts file, resolv.conf, search list,
//! cache and `GREEN_RESOLVER`), so the lookup parks only the greenlet. Numeric hosts and
//! everything outside greenlets go to glibc unchanged. The list is allocated the way glibc
//! allocates its own (one `malloc` block per entry holding the `addrinfo` and its address, the
//! canonical name in its own block), so glibc's `freeaddrinfo` frees both kinds of list and is
//! not hooked. `getnameinfo` runs glibc's own on green's thread pool, so the greenlet waits on the
//! hub while glibc's resolver (not green's) answers.

use std::ffi::CStr;
use std::net::SocketAddr;

use libc::{addrinfo, c_char, c_int, sockaddr, socklen_t};

use green_runtime::foreign;

use crate::io::caught_errno;
use crate::{enabled, real, set_errno};

/// glibc's `EAI_NODATA` (a GNU extension the libc crate does not name for glibc).
const EAI_NODATA: c_int = -5;

/// # Safety
/// libc's `getaddrinfo`.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    if !enabled() || node.is_null() || res.is_null() || !foreign::in_greenlet() {
        return unsafe { real::getaddrinfo(node, service, hints, res) };
    }
    // SAFETY: a non-null hints is the caller's addrinfo.
    let hints = (!hints.is_null()).then(|| unsafe { &*hints });
    let flags = hints.map_or(libc::AI_V4MAPPED | libc::AI_ADDRCONFIG, |h| h.ai_flags);
    let family = hints.map_or(libc::AF_UNSPEC, |h| h.ai_family);
    if flags & libc::AI_NUMERICHOST != 0
        || !matches!(family, libc::AF_UNSPEC | libc::AF_INET | libc::AF_INET6)
        || is_numeric_host(node, service, hints)
    {
        // No name to look up: glibc answers without the network.
        return unsafe {
            real::getaddrinfo(node, service, hints.map_or(std::ptr::null(), |h| h), res)
        };
    }
    // SAFETY: the caller's NUL-terminated host name.
    let Ok(host) = unsafe { CStr::from_ptr(node) }.to_str() else {
        return libc::EAI_NONAME;
    };
    let port = match service_port(service, hints) {
        Ok(port) => port,
        Err(code) => return code,
    };
    let looked_up = foreign::catch_throw(|| green_net::dns::lookup(host, port));
    let mut addrs = match looked_up {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(err)) => return error_code(&err),
        Err(caught) => {
            set_errno(caught_errno(caught));
            return libc::EAI_SYSTEM;
        }
    };
    match family {
        libc::AF_INET => addrs.retain(SocketAddr::is_ipv4),
        libc::AF_INET6 => {
            let has_v6 = addrs.iter().any(SocketAddr::is_ipv6);
            if flags & libc::AI_V4MAPPED != 0 && (!has_v6 || flags & libc::AI_ALL != 0) {
                for addr in addrs.iter_mut() {
                    if let SocketAddr::V4(v4) = *addr {
                        *addr = SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port());
                    }
                }
            } else {
                addrs.retain(SocketAddr::is_ipv6);
            }
        }
        _ => {}
    }
    if addrs.is_empty() {
        return EAI_NODATA;
    }
    let kinds = socket_kinds(hints);
    if kinds.is_empty() {
        return libc::EAI_SOCKTYPE;
    }
    let canonical = (flags & libc::AI_CANONNAME != 0).then_some(host);
    // SAFETY: `res` is the caller's out pointer (checked non-null).
    unsafe { *res = build_list(&addrs, &kinds, canonical) };
    // SAFETY: as above.
    if unsafe { (*res).is_null() } {
        return libc::EAI_MEMORY;
    }
    0
}

/// Whether glibc takes `node` as a numeric address (then it needs no lookup).
fn is_numeric_host(node: *const c_char, service: *const c_char, hints: Option<&addrinfo>) -> bool {
    // SAFETY: an all-zero addrinfo is a valid hints value.
    let mut numeric: addrinfo = hints.copied().unwrap_or(unsafe { std::mem::zeroed() });
    numeric.ai_flags |= libc::AI_NUMERICHOST;
    numeric.ai_flags &= !libc::AI_CANONNAME;
    let mut list = std::ptr::null_mut();
    // SAFETY: glibc's own getaddrinfo with valid pointers; a list it returns is freed at once.
    let code = unsafe { real::getaddrinfo(node, service, &numeric, &mut list) };
    if code == 0 {
        unsafe { libc::freeaddrinfo(list) };
    }
    code != libc::EAI_NONAME
}

/// The port `service` names: a number, or a service name glibc finds in /etc/services.
fn service_port(service: *const c_char, hints: Option<&addrinfo>) -> Result<u16, c_int> {
    if service.is_null() {
        return Ok(0);
    }
    // SAFETY: the caller's NUL-terminated service.
    let text = unsafe { CStr::from_ptr(service) }.to_bytes();
    if let Some(port) = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<u16>().ok())
    {
        return Ok(port);
    }
    if hints.is_some_and(|h| h.ai_flags & libc::AI_NUMERICSERV != 0) {
        return Err(libc::EAI_NONAME);
    }
    // SAFETY: as in `is_numeric_host`.
    let mut lookup: addrinfo = unsafe { std::mem::zeroed() };
    lookup.ai_family = libc::AF_INET;
    lookup.ai_socktype = hints.map_or(0, |h| h.ai_socktype);
    lookup.ai_flags = libc::AI_PASSIVE;
    let mut list = std::ptr::null_mut();
    // SAFETY: glibc's getaddrinfo with no node reads only /etc/services; the list is freed.
    let code = unsafe { real::getaddrinfo(std::ptr::null(), service, &lookup, &mut list) };
    if code != 0 {
        return Err(code);
    }
    // SAFETY: a successful AF_INET lookup returns at least one entry with a sockaddr_in.
    let port = unsafe { u16::from_be((*(*list).ai_addr.cast::<libc::sockaddr_in>()).sin_port) };
    unsafe { libc::freeaddrinfo(list) };
    Ok(port)
}

/// The (socket type, protocol) pairs to list for each address, as glibc lists them.
fn socket_kinds(hints: Option<&addrinfo>) -> Vec<(c_int, c_int)> {
    let socktype = hints.map_or(0, |h| h.ai_socktype);
    let protocol = hints.map_or(0, |h| h.ai_protocol);
    let or_default = |default: c_int| if protocol == 0 { default } else { protocol };
    match socktype {
        0 => [
            (libc::SOCK_STREAM, libc::IPPROTO_TCP),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
            (libc::SOCK_RAW, 0),
        ]
        .into_iter()
        .filter(|&(_, proto)| protocol == 0 || proto == protocol)
        .collect(),
        libc::SOCK_STREAM => vec![(socktype, or_default(libc::IPPROTO_TCP))],
        libc::SOCK_DGRAM => vec![(socktype, or_default(libc::IPPROTO_UDP))],
        libc::SOCK_RAW => vec![(socktype, protocol)],
        _ => Vec::new(),
    }
}

/// Builds the list glibc's `freeaddrinfo` can free: each entry one `malloc` block holding the
/// `addrinfo` followed by its address; the canonical name (first entry only) its own block.
/// Null if memory ran out (whatever was built is freed).
fn build_list(
    addrs: &[SocketAddr],
    kinds: &[(c_int, c_int)],
    canonical: Option<&str>,
) -> *mut addrinfo {
    let entry_size = std::mem::size_of::<addrinfo>() + std::mem::size_of::<libc::sockaddr_in6>();
    let mut head: *mut addrinfo = std::ptr::null_mut();
    let mut tail: *mut addrinfo = std::ptr::null_mut();
    for addr in addrs {
        for &(socktype, protocol) in kinds {
            // SAFETY: malloc of a block sized for the entry; zeroed before use.
            let block = unsafe { libc::calloc(1, entry_size) }.cast::<addrinfo>();
            if block.is_null() {
                // SAFETY: `head` is a list built by this function.
                unsafe { libc::freeaddrinfo(head) };
                return std::ptr::null_mut();
            }
            // SAFETY: the address part follows the addrinfo inside the same block.
            let storage = unsafe { block.add(1) }.cast::<u8>();
            let addrlen = write_sockaddr(addr, storage);
            // SAFETY: `block` is a fresh zeroed addrinfo.
            let entry = unsafe { &mut *block };
            entry.ai_family = if addr.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            entry.ai_socktype = socktype;
            entry.ai_protocol = protocol;
            entry.ai_addrlen = addrlen;
            entry.ai_addr = storage.cast::<sockaddr>();
            if head.is_null() {
                if let Some(name) = canonical {
                    entry.ai_canonname = malloc_cstring(name);
                }
                head = block;
            } else {
                // SAFETY: `tail` is the previous entry of this list.
                unsafe { (*tail).ai_next = block };
            }
            tail = block;
        }
    }
    head
}

fn malloc_cstring(text: &str) -> *mut c_char {
    // SAFETY: a block one longer than the text, filled and NUL-terminated.
    unsafe {
        let block = libc::malloc(text.len() + 1).cast::<u8>();
        if !block.is_null() {
            std::ptr::copy_nonoverlapping(text.as_ptr(), block, text.len());
            *block.add(text.len()) = 0;
        }
        block.cast()
    }
}

/// Writes `addr` as a `sockaddr_in`/`sockaddr_in6` at `out`; returns its length.
fn write_sockaddr(addr: &SocketAddr, out: *mut u8) -> socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: an all-zero sockaddr_in is valid.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            // SAFETY: `out` has room for a sockaddr_in6, larger than a sockaddr_in.
            unsafe { out.cast::<libc::sockaddr_in>().write_unaligned(sin) };
            std::mem::size_of::<libc::sockaddr_in>() as socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: an all-zero sockaddr_in6 is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            // SAFETY: `out` has room for a sockaddr_in6.
            unsafe { out.cast::<libc::sockaddr_in6>().write_unaligned(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as socklen_t
        }
    }
}

/// glibc's code for a failed lookup.
fn error_code(err: &std::io::Error) -> c_int {
    use green_net::dns::DnsErrorKind;
    match green_net::dns::error_kind(err) {
        Some(DnsErrorKind::NoSuchName) | Some(DnsErrorKind::InvalidName) => libc::EAI_NONAME,
        Some(DnsErrorKind::NoData) => EAI_NODATA,
        Some(DnsErrorKind::Temporary) | Some(DnsErrorKind::TimedOut) => libc::EAI_AGAIN,
        Some(_) => libc::EAI_FAIL,
        None => match err.kind() {
            std::io::ErrorKind::NotFound => libc::EAI_NONAME,
            std::io::ErrorKind::TimedOut => libc::EAI_AGAIN,
            _ => libc::EAI_FAIL,
        },
    }
}

/// # Safety
/// libc's `getnameinfo`.
#[no_mangle]
pub unsafe extern "C" fn getnameinfo(
    addr: *const sockaddr,
    addrlen: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    let numeric = flags & libc::NI_NUMERICHOST != 0 || host.is_null() || hostlen == 0;
    if !enabled() || numeric || addr.is_null() || !foreign::in_greenlet() {
        return unsafe { real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags) };
    }
    let len = (addrlen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: the caller's address of `addrlen` bytes.
    let address = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) }.to_vec();
    let (host_capacity, serv_capacity) = (
        hostlen as usize,
        if serv.is_null() { 0 } else { servlen as usize },
    );
    let job = green_runtime::spawn_blocking(move || {
        // SAFETY: an all-zero sockaddr_storage, then the caller's bytes copied into it.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        unsafe {
            std::ptr::copy_nonoverlapping(
                address.as_ptr(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                address.len(),
            )
        };
        let mut host = vec![0 as c_char; host_capacity];
        let mut serv = vec![0 as c_char; serv_capacity];
        let serv_ptr = if serv_capacity == 0 {
            std::ptr::null_mut()
        } else {
            serv.as_mut_ptr()
        };
        // SAFETY: glibc's getnameinfo on a pool thread (not a greenlet), with owned buffers.
        let code = unsafe {
            real::getnameinfo(
                (&storage as *const libc::sockaddr_storage).cast(),
                address.len() as socklen_t,
                host.as_mut_ptr(),
                host_capacity as socklen_t,
                serv_ptr,
                serv_capacity as socklen_t,
                flags,
            )
        };
        (
            code,
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            host,
            serv,
        )
    });
    match foreign::catch_throw(|| job.join()) {
        Ok(Ok((code, os_error, host_out, serv_out))) => {
            if code == 0 {
                // SAFETY: the caller's buffers of these capacities.
                unsafe {
                    std::ptr::copy_nonoverlapping(host_out.as_ptr(), host, host_capacity);
                    if serv_capacity > 0 {
                        std::ptr::copy_nonoverlapping(serv_out.as_ptr(), serv, serv_capacity);
                    }
                }
            } else if code == libc::EAI_SYSTEM {
                set_errno(os_error);
            }
            code
        }
        Ok(Err(_)) => libc::EAI_FAIL,
        Err(caught) => {
            set_errno(caught_errno(caught));
            libc::EAI_SYSTEM
        }
    }
}
