//! DNS messages on the wire: building a query, recognising its reply and reading the addresses
//! (following CNAMEs) and the negative TTL out of it. Sans-IO, so the exchange in `native.rs`
//! stays about sockets and deadlines.
//!
//! Queries and replies are encoded and read here directly rather than through hickory-proto's
//! `Message`, which builds every record of a reply as owned values: a lookup is two queries and
//! two small replies, and that decoding cost several times the rest of the client's work. Only
//! what a stub resolver needs is read (the header, the question, address and CNAME records of the
//! answer, the SOA of the authority section, the OPT record), but every name and record of the
//! reply is checked to be well formed, with hickory's rules for compression pointers, and a
//! malformed reply is dropped as hickory would drop it. hickory-proto still provides the types
//! (`Name`, `RecordType`, `ResponseCode`).

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

/// The EDNS0 UDP payload size advertised (the DNS flag day 2020 value: no IP fragmentation).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// The longest CNAME chain followed.
pub(crate) const MAX_CNAME_HOPS: usize = 16;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const TYPE_SIG: u16 = 24;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
pub(crate) const HEADER_LEN: usize = 12;

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

/// The wire form of `name`: length-prefixed labels ending with the root label.
pub(crate) fn wire_name(name: &Name) -> Vec<u8> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    wire
}

/// Encodes a recursive query for the name `qname` (wire form, see [`wire_name`]) and `rtype`,
/// with an EDNS0 OPT record if `edns`.
pub(crate) fn build_query(id: u16, qname: &[u8], rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut query = Vec::with_capacity(HEADER_LEN + qname.len() + 4 + 11);
    query.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query with recursion desired; one question, one OPT record if EDNS0.
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    query.extend_from_slice(qname);
    query.extend_from_slice(&u16::from(rtype).to_be_bytes());
    query.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        // Root owner, type OPT, class = UDP payload size, TTL = extended RCODE 0, version 0, no
        // flags, no options.
        query.extend_from_slice(&[0]);
        query.extend_from_slice(&TYPE_OPT.to_be_bytes());
        query.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        query.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    query
}

/// The ID of the message in `msg`, if it is long enough to have one.
pub(crate) fn message_id(msg: &[u8]) -> Option<u16> {
    be16(msg, 0)
}

/// A reply to one question, as far as the resolver cares.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The response code, extended by the OPT record's high bits.
    pub(crate) rcode: ResponseCode,
    /// The TC bit: the answer did not fit.
    pub(crate) truncated: bool,
    /// Whether the reply carries an OPT record (the server speaks EDNS0).
    pub(crate) edns: bool,
    /// What it says about the name asked.
    pub(crate) answer: Answer,
}

/// What a reply says about `name`/`rtype`.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The addresses found at the end of the CNAME chain.
    pub(crate) addrs: Vec<IpAddr>,
    /// The smallest TTL of the records used (chain and addresses); `u32::MAX` if none was.
    pub(crate) ttl: u32,
    /// The last name of the CNAME chain, if it differs from the name asked.
    pub(crate) canonical: Option<Name>,
    /// The negative-caching TTL, min(SOA TTL, SOA MINIMUM), if an SOA is in the authority section.
    pub(crate) negative_ttl: Option<u32>,
}

/// Reads `msg` as the reply to query `id` for the name `qname` (wire form) and `rtype`: `None`
/// unless it is a well-formed response with that ID and exactly that question (the name compared
/// without regard to ASCII case). Anything else must be dropped.
pub(crate) fn parse_reply(msg: &[u8], id: u16, qname: &[u8], rtype: RecordType) -> Option<Reply> {
    let flags = be16(msg, 2)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if be16(msg, 0)? != id || !is_response || opcode != 0 || be16(msg, 4)? != 1 {
        return None;
    }
    let counts = [be16(msg, 6)?, be16(msg, 8)?, be16(msg, 10)?];
    // The question must be the name as sent, perhaps in another case (a compression pointer could
    // only point into the header).
    let question_end = HEADER_LEN + qname.len();
    if !msg
        .get(HEADER_LEN..question_end)
        .is_some_and(|echoed| echoed.eq_ignore_ascii_case(qname))
    {
        return None;
    }
    if be16(msg, question_end)? != u16::from(rtype) || be16(msg, question_end + 2)? != CLASS_IN {
        return None;
    }
    let answers_at = question_end + 4;
    // Every record of every section must be well formed; the SOA and OPT records are noted.
    let mut pos = answers_at;
    let mut negative_ttl = None;
    let mut opt_ttl = None;
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let record = read_record(msg, pos)?;
            pos = record.end;
            match record.rtype {
                TYPE_OPT | TYPE_SIG | TYPE_TSIG if section != 2 => return None,
                // The OPT record is noted; a second one makes the reply malformed.
                TYPE_OPT if opt_ttl.replace(record.ttl).is_some() => return None,
                TYPE_SOA if section == 1 && negative_ttl.is_none() => {
                    let minimum = be32(msg, record.rdata + record.rdlen - 4)?;
                    negative_ttl = Some(record.ttl.min(minimum));
                }
                _ => {}
            }
        }
    }
    let low = (flags & 0xf) as u8;
    let high = opt_ttl.map_or(0, |ttl| (ttl >> 24) as u8);
    let answer = read_answer(msg, answers_at, counts[0], rtype, negative_ttl)?;
    Some(Reply {
        rcode: ResponseCode::from(high, low),
        truncated: flags & 0x0200 != 0,
        edns: opt_ttl.is_some(),
        answer,
    })
}

/// One resource record, located in the message.
struct Record {
    /// Where its owner name starts.
    name: usize,
    rtype: u16,
    ttl: u32,
    rdata: usize,
    rdlen: usize,
    /// Where the next record starts.
    end: usize,
}

/// Reads the record at `pos`, checking its owner name and, for the types read later (A, AAAA,
/// CNAME, SOA), its data.
fn read_record(msg: &[u8], pos: usize) -> Option<Record> {
    let fixed = skip_name(msg, pos)?;
    let rtype = be16(msg, fixed)?;
    let ttl = be32(msg, fixed + 4)?;
    let rdlen = usize::from(be16(msg, fixed + 8)?);
    let rdata = fixed + 10;
    let end = rdata + rdlen;
    if end > msg.len() {
        return None;
    }
    let well_formed = match rtype {
        TYPE_A => rdlen == 4,
        TYPE_AAAA => rdlen == 16,
        TYPE_CNAME => skip_name(msg, rdata) == Some(end),
        TYPE_SOA => skip_name(msg, rdata)
            .and_then(|rname| skip_name(msg, rname))
            .is_some_and(|serial| serial + 20 == end),
        TYPE_OPT => true,
        // An empty record is an update (RFC 2136), invalid in a reply.
        _ => rdlen > 0,
    };
    well_formed.then_some(Record {
        name: pos,
        rtype,
        ttl,
        rdata,
        rdlen,
        end,
    })
}

/// Follows the CNAME chain from the question's name through the `count` answer records at
/// `answers_at`, collecting the addresses of type `rtype` at its end.
fn read_answer(
    msg: &[u8],
    answers_at: usize,
    count: u16,
    rtype: RecordType,
    negative_ttl: Option<u32>,
) -> Option<Answer> {
    let wanted = u16::from(rtype);
    let mut canonical = HEADER_LEN;
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        let mut next = None;
        let mut pos = answers_at;
        for _ in 0..count {
            let record = read_record(msg, pos)?;
            pos = record.end;
            if !names_equal(msg, record.name, canonical) {
                continue;
            }
            match record.rtype {
                TYPE_A if wanted == TYPE_A => {
                    let octets: [u8; 4] = msg[record.rdata..record.end].try_into().ok()?;
                    addrs.push(IpAddr::V4(Ipv4Addr::from(octets)));
                }
                TYPE_AAAA if wanted == TYPE_AAAA => {
                    let octets: [u8; 16] = msg[record.rdata..record.end].try_into().ok()?;
                    addrs.push(IpAddr::V6(Ipv6Addr::from(octets)));
                }
                TYPE_CNAME => next = Some(record.rdata),
                _ => continue,
            }
            ttl = ttl.min(record.ttl);
        }
        match next {
            Some(target) if addrs.is_empty() => canonical = target,
            _ => break,
        }
    }
    let canonical = if names_equal(msg, canonical, HEADER_LEN) {
        None
    } else {
        Some(to_name(msg, canonical)?)
    };
    Some(Answer {
        addrs,
        ttl,
        canonical,
        negative_ttl,
    })
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

fn be32(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(msg.get(at..at + 4)?.try_into().ok()?))
}

/// The labels of a name in a message, following compression pointers with hickory-proto's rules:
/// a pointer must point before the start of the part of the name being read, and reading after
/// a jump must stay before where the jump was taken (so there are no loops); labels are at most
/// 63 bytes and names 255.
struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    /// Where the part of the name being read started.
    part_start: usize,
    /// Reading must stay before this after a jump.
    limit: usize,
    /// The position after the name's bytes where it started (before the first jump).
    end: Option<usize>,
    len: usize,
    done: bool,
}

impl<'a> Labels<'a> {
    fn new(msg: &'a [u8], pos: usize) -> Labels<'a> {
        Labels {
            msg,
            pos,
            part_start: pos,
            limit: usize::MAX,
            end: None,
            len: 0,
            done: false,
        }
    }

    /// The next label: `Some(None)` once the root label is read, `None` if the name is malformed.
    fn next_label(&mut self) -> Option<Option<&'a [u8]>> {
        if self.done {
            return Some(None);
        }
        loop {
            if self.pos >= self.limit {
                return None;
            }
            let len = *self.msg.get(self.pos)?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    self.end.get_or_insert(self.pos + 1);
                    self.done = true;
                    return Some(None);
                }
                0x00 => {
                    let start = self.pos + 1;
                    let label = self.msg.get(start..start + usize::from(len))?;
                    self.len += label.len() + 1;
                    if self.len >= 255 {
                        return None;
                    }
                    self.pos = start + label.len();
                    return Some(Some(label));
                }
                0xc0 => {
                    let target = usize::from(be16(self.msg, self.pos)? & 0x3fff);
                    if target >= self.part_start {
                        return None;
                    }
                    self.end.get_or_insert(self.pos + 2);
                    self.limit = self.part_start;
                    self.part_start = target;
                    self.pos = target;
                }
                _ => return None,
            }
        }
    }

    /// Whether both have reached the same bytes of the message (so the rest is equal).
    fn same_place(&self, other: &Labels<'_>) -> bool {
        self.pos == other.pos && !self.done && !other.done
    }
}

/// Checks the name at `pos` and returns where the bytes after it start.
fn skip_name(msg: &[u8], pos: usize) -> Option<usize> {
    let mut labels = Labels::new(msg, pos);
    while labels.next_label()?.is_some() {}
    labels.end
}

/// Whether the names at `a` and `b` in `msg` (both already checked) are equal, ignoring ASCII
/// case.
fn names_equal(msg: &[u8], a: usize, b: usize) -> bool {
    // Most owner names of an answer are a pointer to the question's name.
    let points_to = |at: usize, target: usize| {
        be16(msg, at)
            .is_some_and(|word| word & 0xc000 == 0xc000 && usize::from(word & 0x3fff) == target)
    };
    if a == b || points_to(a, b) || points_to(b, a) {
        return true;
    }
    let (mut a, mut b) = (Labels::new(msg, a), Labels::new(msg, b));
    loop {
        if a.same_place(&b) {
            // Both continue with the same bytes: equal if those are well formed.
            return skip_rest(&mut a);
        }
        match (a.next_label(), b.next_label()) {
            (Some(None), Some(None)) => return true,
            (Some(Some(x)), Some(Some(y))) if x.eq_ignore_ascii_case(y) => {}
            _ => return false,
        }
    }
}

fn skip_rest(labels: &mut Labels<'_>) -> bool {
    loop {
        match labels.next_label() {
            Some(Some(_)) => {}
            Some(None) => return true,
            None => return false,
        }
    }
}

/// The name at `pos` in `msg` as a hickory-proto `Name`.
fn to_name(msg: &[u8], pos: usize) -> Option<Name> {
    let mut labels = Labels::new(msg, pos);
    let mut all = Vec::new();
    while let Some(label) = labels.next_label()? {
        all.push(label);
    }
    Name::from_labels(all).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::{RData, Record as HickoryRecord};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn response(id: u16, qname: &str, rtype: RecordType) -> Message {
        let mut msg = Message::new(id, MessageType::Response, OpCode::Query);
        msg.add_query(Query::query(name(qname), rtype));
        msg
    }

    fn parse(msg: &Message, id: u16, qname: &str, rtype: RecordType) -> Option<Reply> {
        let bytes = msg.to_vec().unwrap();
        parse_reply(&bytes, id, &wire_name(&name(qname)), rtype)
    }

    #[test]
    fn query_decodes_with_hickory_and_carries_the_edns_payload() {
        let bytes = build_query(7, &wire_name(&name("a.Test.")), RecordType::AAAA, true);
        let msg = Message::from_vec(&bytes).unwrap();
        assert_eq!(msg.id, 7);
        assert!(msg.recursion_desired);
        assert_eq!(msg.message_type, MessageType::Query);
        assert_eq!(msg.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);
        assert_eq!(msg.queries[0].name, name("a.test."));
        assert_eq!(msg.queries[0].query_type, RecordType::AAAA);
        let plain = build_query(8, &wire_name(&name("a.test.")), RecordType::A, false);
        assert!(Message::from_vec(&plain).unwrap().edns.is_none());
    }

    #[test]
    fn cname_chain_is_followed_and_ttl_is_the_minimum() {
        let mut msg = response(1, "www.test.", RecordType::A);
        msg.add_answer(HickoryRecord::from_rdata(
            name("www.test."),
            300,
            RData::CNAME(CNAME(name("mid.test."))),
        ));
        msg.add_answer(HickoryRecord::from_rdata(
            name("mid.test."),
            30,
            RData::CNAME(CNAME(name("end.test."))),
        ));
        msg.add_answer(HickoryRecord::from_rdata(
            name("end.test."),
            100,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 9))),
        ));
        msg.add_answer(HickoryRecord::from_rdata(
            name("other.test."),
            1,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 66))),
        ));
        let reply = parse(&msg, 1, "WWW.test.", RecordType::A).unwrap();
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(!reply.truncated && !reply.edns);
        let answer = reply.answer;
        assert_eq!(answer.addrs, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))]);
        assert_eq!(answer.ttl, 30);
        assert_eq!(answer.canonical, Some(name("end.test.")));
        assert!(parse(&msg, 2, "www.test.", RecordType::A).is_none());
        assert!(parse(&msg, 1, "www.test.", RecordType::AAAA).is_none());
        assert!(parse(&msg, 1, "ww.test.", RecordType::A).is_none());
    }

    #[test]
    fn cname_leaving_the_answer_names_its_target() {
        let mut msg = response(3, "alias.test.", RecordType::AAAA);
        msg.add_answer(HickoryRecord::from_rdata(
            name("alias.test."),
            60,
            RData::CNAME(CNAME(name("target.example."))),
        ));
        let answer = parse(&msg, 3, "alias.test.", RecordType::AAAA)
            .unwrap()
            .answer;
        assert!(answer.addrs.is_empty());
        assert_eq!(answer.ttl, 60);
        assert_eq!(answer.canonical, Some(name("target.example.")));
    }

    #[test]
    fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
        let mut msg = response(1, "x.test.", RecordType::A);
        msg.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(name("ns.test."), name("root.test."), 1, 2, 3, 4, 600);
        msg.add_authority(HickoryRecord::from_rdata(
            name("test."),
            120,
            RData::SOA(soa),
        ));
        let reply = parse(&msg, 1, "x.test.", RecordType::A).unwrap();
        assert_eq!(reply.rcode, ResponseCode::NXDomain);
        assert!(reply.answer.addrs.is_empty());
        assert_eq!(reply.answer.canonical, None);
        assert_eq!(reply.answer.negative_ttl, Some(120));
    }

    #[test]
    fn opt_record_extends_the_response_code_and_is_reported() {
        let mut msg = response(5, "e.test.", RecordType::A);
        msg.metadata.response_code = ResponseCode::BADVERS;
        msg.set_edns(Edns::new());
        let reply = parse(&msg, 5, "e.test.", RecordType::A).unwrap();
        assert!(reply.edns);
        // BADVERS and BADSIG share the code 16.
        assert_eq!(u16::from(reply.rcode), 16);
        let mut formerr = response(6, "e.test.", RecordType::A);
        formerr.metadata.response_code = ResponseCode::FormErr;
        formerr.metadata.truncation = true;
        let reply = parse(&formerr, 6, "e.test.", RecordType::A).unwrap();
        assert_eq!(reply.rcode, ResponseCode::FormErr);
        assert!(reply.truncated && !reply.edns);
    }

    #[test]
    fn malformed_replies_are_dropped() {
        let mut msg = response(9, "m.test.", RecordType::A);
        msg.add_answer(HickoryRecord::from_rdata(
            name("m.test."),
            60,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
        ));
        let bytes = msg.to_vec().unwrap();
        let qname = wire_name(&name("m.test."));
        assert!(parse_reply(&bytes, 9, &qname, RecordType::A).is_some());
        // Cut anywhere, the reply is incomplete.
        for len in 0..bytes.len() {
            assert!(parse_reply(&bytes[..len], 9, &qname, RecordType::A).is_none());
        }
        // A query is not a reply.
        let query = build_query(9, &qname, RecordType::A, true);
        assert!(parse_reply(&query, 9, &qname, RecordType::A).is_none());
        // A pointer to itself (a loop) and a pointer forward are rejected.
        let mut looped = bytes.clone();
        let owner = HEADER_LEN + qname.len() + 4;
        looped[owner..owner + 2].copy_from_slice(&[0xc0, owner as u8]);
        assert!(parse_reply(&looped, 9, &qname, RecordType::A).is_none());
        looped[owner..owner + 2].copy_from_slice(&[0xc0, owner as u8 + 4]);
        assert!(parse_reply(&looped, 9, &qname, RecordType::A).is_none());
        // An address record of the wrong length.
        let mut short = bytes.clone();
        let rdlen = bytes.len() - 6;
        short[rdlen..rdlen + 2].copy_from_slice(&[0, 3]);
        short.pop();
        assert!(parse_reply(&short, 9, &qname, RecordType::A).is_none());
    }
}
