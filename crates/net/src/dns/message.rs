//! DNS messages through hickory-proto's codec: building a query, recognising its reply and reading
//! the addresses (following CNAMEs) and the negative TTL out of it. Sans-IO, so the exchange in
//! `native.rs` stays about sockets and deadlines.

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// The EDNS0 UDP payload size advertised (the DNS flag day 2020 value: no IP fragmentation).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// The longest CNAME chain followed.
pub(crate) const MAX_CNAME_HOPS: usize = 16;

thread_local! {
    static RANDOM: RefCell<([u8; 256], usize)> = const { RefCell::new(([0; 256], 256)) };
}

/// A random 16-bit value from the OS's CSPRNG (buffered per thread): query IDs must not be
/// guessable by an off-path attacker.
pub(crate) fn random_u16() -> io::Result<u16> {
    RANDOM.with(|random| {
        let (buf, used) = &mut *random.borrow_mut();
        if *used + 2 > buf.len() {
            getrandom::fill(buf).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
            *used = 0;
        }
        let value = u16::from_ne_bytes([buf[*used], buf[*used + 1]]);
        *used += 2;
        Ok(value)
    })
}

/// Encodes a recursive query for `name`/`rtype`, with an EDNS0 OPT record if `edns`.
pub(crate) fn build_query(
    id: u16,
    name: &Name,
    rtype: RecordType,
    edns: bool,
) -> io::Result<Vec<u8>> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_PAYLOAD);
        opt.set_version(0);
        msg.set_edns(opt);
    }
    msg.to_vec()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encoding query: {e}")))
}

/// Whether `msg` is the reply to query `id` for `name`/`rtype`: a response with that ID and
/// exactly that question. Anything else must be dropped.
pub(crate) fn is_reply_to(msg: &Message, id: u16, name: &Name, rtype: RecordType) -> bool {
    msg.id == id
        && msg.message_type == MessageType::Response
        && msg.op_code == OpCode::Query
        && msg.queries.len() == 1
        && msg.queries[0].name == *name
        && msg.queries[0].query_type == rtype
        && msg.queries[0].query_class == DNSClass::IN
}

/// What a NOERROR or NXDOMAIN reply says about `name`/`rtype`.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The addresses found at the end of the CNAME chain.
    pub(crate) addrs: Vec<IpAddr>,
    /// The smallest TTL of the records used (chain and addresses); `u32::MAX` if none was.
    pub(crate) ttl: u32,
    /// The last name of the CNAME chain (`name` itself without CNAMEs).
    pub(crate) canonical: Name,
    /// The negative-caching TTL, min(SOA TTL, SOA MINIMUM), if an SOA is in the authority section.
    pub(crate) negative_ttl: Option<u32>,
}

/// Reads the answer to `name`/`rtype` out of `msg`, following CNAMEs within the answer section.
pub(crate) fn read_answer(msg: &Message, name: &Name, rtype: RecordType) -> Answer {
    let mut canonical = name.clone();
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        let mut next = None;
        for record in msg.answers.iter().filter(|r| r.name == canonical) {
            match (&record.data, rtype) {
                (RData::A(a), RecordType::A) => addrs.push(IpAddr::V4(a.0)),
                (RData::AAAA(aaaa), RecordType::AAAA) => addrs.push(IpAddr::V6(aaaa.0)),
                (RData::CNAME(target), _) => next = Some(target.0.clone()),
                _ => continue,
            }
            ttl = ttl.min(record.ttl);
        }
        match next {
            Some(target) if addrs.is_empty() => canonical = target,
            _ => break,
        }
    }
    let negative_ttl = msg
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        });
    Answer {
        addrs,
        ttl,
        canonical,
        negative_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::Record;
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn query_round_trips_with_edns_payload() {
        let bytes = build_query(7, &name("a.test."), RecordType::AAAA, true).unwrap();
        let msg = Message::from_vec(&bytes).unwrap();
        assert_eq!(msg.id, 7);
        assert!(msg.recursion_desired);
        assert_eq!(msg.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);
        assert_eq!(msg.queries[0].query_type, RecordType::AAAA);
    }

    #[test]
    fn cname_chain_is_followed_and_ttl_is_the_minimum() {
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        msg.add_query(Query::query(name("www.test."), RecordType::A));
        msg.add_answer(Record::from_rdata(
            name("www.test."),
            300,
            RData::CNAME(CNAME(name("mid.test."))),
        ));
        msg.add_answer(Record::from_rdata(
            name("mid.test."),
            30,
            RData::CNAME(CNAME(name("end.test."))),
        ));
        msg.add_answer(Record::from_rdata(
            name("end.test."),
            100,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 9))),
        ));
        msg.add_answer(Record::from_rdata(
            name("other.test."),
            1,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 66))),
        ));
        let answer = read_answer(&msg, &name("www.test."), RecordType::A);
        assert_eq!(answer.addrs, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))]);
        assert_eq!(answer.ttl, 30);
        assert_eq!(answer.canonical, name("end.test."));
        assert!(is_reply_to(&msg, 1, &name("WWW.test."), RecordType::A));
        assert!(!is_reply_to(&msg, 2, &name("www.test."), RecordType::A));
        assert!(!is_reply_to(&msg, 1, &name("www.test."), RecordType::AAAA));
    }

    #[test]
    fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        msg.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(name("ns.test."), name("root.test."), 1, 2, 3, 4, 600);
        msg.add_authority(Record::from_rdata(name("test."), 120, RData::SOA(soa)));
        let answer = read_answer(&msg, &name("x.test."), RecordType::A);
        assert!(answer.addrs.is_empty());
        assert_eq!(answer.negative_ttl, Some(120));
    }
}
