//! RFC 6724 destination address selection, so that Happy Eyeballs tries the best address first.
//!
//! getaddrinfo sorts its answers this way; a stub resolver has to do it itself. The source
//! address the kernel would use for each destination comes from `connect` on an unbound UDP
//! socket (no packet is sent); a destination with no route is "unusable" (rule 1). Rules 1, 2,
//! 5, 6, 8, 9 (IPv6 only, as glibc) and 10 are applied with the RFC's default policy table;
//! rules 3, 4 and 7 need interface data the kernel does not hand out cheaply and are skipped.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Sorts `addrs` into the order connections should be tried (RFC 6724 §6), keeping the given
/// order among equals.
pub fn sort_addresses(addrs: &mut [IpAddr]) {
    if addrs.len() < 2 {
        return;
    }
    let mut keyed: Vec<(IpAddr, Option<IpAddr>)> =
        addrs.iter().map(|&ip| (ip, source_for(ip))).collect();
    sort_with_sources(&mut keyed);
    for (slot, (ip, _)) in addrs.iter_mut().zip(keyed) {
        *slot = ip;
    }
}

/// The source address the kernel picks for `dest`, or `None` if it has no route.
fn source_for(dest: IpAddr) -> Option<IpAddr> {
    let local: SocketAddr = match dest {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect((dest, 9)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Stable sort of (destination, source) pairs by the RFC 6724 rules.
pub(crate) fn sort_with_sources(items: &mut [(IpAddr, Option<IpAddr>)]) {
    items.sort_by(|a, b| compare(*a, *b));
}

fn compare((da, sa): (IpAddr, Option<IpAddr>), (db, sb): (IpAddr, Option<IpAddr>)) -> Ordering {
    // Rule 1: avoid unusable destinations.
    let (sa, sb) = match (sa, sb) {
        (Some(sa), Some(sb)) => (sa, sb),
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (None, None) => return Ordering::Equal,
    };
    let (da6, db6, sa6, sb6) = (v6(da), v6(db), v6(sa), v6(sb));
    // Rule 2: prefer matching scope.
    let (scope_da, scope_db) = (scope(&da6), scope(&db6));
    let a_match = scope_da == scope(&sa6);
    let b_match = scope_db == scope(&sb6);
    if a_match != b_match {
        return if a_match {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // Rule 5: prefer matching label.
    let a_label = policy(&da6).1 == policy(&sa6).1;
    let b_label = policy(&db6).1 == policy(&sb6).1;
    if a_label != b_label {
        return if a_label {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // Rule 6: prefer higher precedence.
    let (prec_a, prec_b) = (policy(&da6).0, policy(&db6).0);
    if prec_a != prec_b {
        return prec_b.cmp(&prec_a);
    }
    // Rule 8: prefer smaller scope.
    if scope_da != scope_db {
        return scope_da.cmp(&scope_db);
    }
    // Rule 9: longest matching prefix (IPv6 pairs only).
    if let (IpAddr::V6(da), IpAddr::V6(sa), IpAddr::V6(db), IpAddr::V6(sb)) = (da, sa, db, sb) {
        let (la, lb) = (common_prefix(&da, &sa), common_prefix(&db, &sb));
        if la != lb {
            return lb.cmp(&la);
        }
    }
    // Rule 10: leave the order unchanged.
    Ordering::Equal
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The scope value of RFC 4291 / RFC 6724 §3.2 (2 = link-local, 5 = site-local, 14 = global).
fn scope(ip: &Ipv6Addr) -> u8 {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        let o = v4.octets();
        return if o[0] == 127 || (o[0] == 169 && o[1] == 254) {
            2
        } else {
            14
        };
    }
    if seg[0] >> 8 == 0xff {
        return (seg[0] & 0x000f) as u8;
    }
    if ip.is_loopback() || seg[0] & 0xffc0 == 0xfe80 {
        return 2;
    }
    if seg[0] & 0xffc0 == 0xfec0 {
        return 5;
    }
    14
}

/// (precedence, label) from RFC 6724 §2.1's default policy table.
fn policy(ip: &Ipv6Addr) -> (u8, u8) {
    const TABLE: [(u128, u32, u8, u8); 9] = [
        (1, 128, 50, 0),               // ::1/128
        (0xffff_0000_0000, 96, 35, 4), // ::ffff:0:0/96
        (0x2002 << 112, 16, 30, 2),    // 2002::/16
        (0x2001 << 112, 32, 5, 5),     // 2001::/32
        (0xfc00 << 112, 7, 3, 13),     // fc00::/7
        (0, 96, 1, 3),                 // ::/96
        (0xfec0 << 112, 10, 1, 11),    // fec0::/10
        (0x3ffe << 112, 16, 1, 12),    // 3ffe::/16
        (0, 0, 40, 1),                 // ::/0
    ];
    let bits = u128::from(*ip);
    let mut best: Option<(u32, u8, u8)> = None;
    for (prefix, len, precedence, label) in TABLE {
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        if bits & mask == prefix && !matches!(best, Some((l, _, _)) if l >= len) {
            best = Some((len, precedence, label));
        }
    }
    best.map_or((40, 1), |(_, precedence, label)| (precedence, label))
}

/// Common prefix length of two addresses, at most 64 bits (the source's prefix, RFC 6724 §2.2).
fn common_prefix(a: &Ipv6Addr, b: &Ipv6Addr) -> u32 {
    (u128::from(*a) ^ u128::from(*b)).leading_zeros().min(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sorted(items: &[(&str, Option<&str>)]) -> Vec<String> {
        let mut keyed: Vec<_> = items.iter().map(|(d, s)| (ip(d), s.map(ip))).collect();
        sort_with_sources(&mut keyed);
        keyed.iter().map(|(d, _)| d.to_string()).collect()
    }

    #[test]
    fn unusable_destinations_go_last() {
        let order = sorted(&[("2001:db8::1", None), ("192.0.2.1", Some("192.0.2.100"))]);
        assert_eq!(order, ["192.0.2.1", "2001:db8::1"]);
    }

    #[test]
    fn global_ipv6_beats_ipv4_when_both_are_routable() {
        let order = sorted(&[
            ("192.0.2.1", Some("192.0.2.100")),
            ("2a00:1450::1", Some("2a00:1450::99")),
        ]);
        assert_eq!(order, ["2a00:1450::1", "192.0.2.1"]);
    }

    #[test]
    fn loopback_v6_beats_loopback_v4_and_ula_loses_to_ipv4() {
        let order = sorted(&[("127.0.0.1", Some("127.0.0.1")), ("::1", Some("::1"))]);
        assert_eq!(order, ["::1", "127.0.0.1"]);
        let order = sorted(&[
            ("fd00::1", Some("2a00:1450::99")),
            ("192.0.2.1", Some("192.0.2.100")),
        ]);
        assert_eq!(order, ["192.0.2.1", "fd00::1"]);
    }

    #[test]
    fn longest_matching_prefix_breaks_ties_and_equal_keep_order() {
        let order = sorted(&[
            ("2a00:2::1", Some("2a00:1::9")),
            ("2a00:1::1", Some("2a00:1::9")),
        ]);
        assert_eq!(order, ["2a00:1::1", "2a00:2::1"]);
        let order = sorted(&[
            ("192.0.2.2", Some("10.0.0.1")),
            ("192.0.2.1", Some("10.0.0.1")),
        ]);
        assert_eq!(order, ["192.0.2.2", "192.0.2.1"]);
    }
}
