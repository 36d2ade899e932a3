//! The DNS reply reader over arbitrary bytes, for the `parse_reply` fuzz target (feature
//! `fuzzing`; not a public API). The question the reply must answer is taken from the bytes
//! themselves, so every input reaches the record checks and the CNAME walk.
//!
//! The target (`crates/net/fuzz`, outside the workspace) also decodes each input with
//! hickory-proto and checks that both agree wherever both accept it. Run it as the HTTP targets
//! are run, with a nightly toolchain and `cargo install cargo-fuzz`:
//! `cd crates/net/fuzz && cargo +nightly fuzz run dns_reply -- -max_total_time=300`.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::message::{self, HEADER_LEN};

/// What green's reader accepted from a reply (see `message::Reply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReply {
    /// The query type taken from the question.
    pub rtype: u16,
    /// The response code, extended by the OPT record's high bits.
    pub rcode: u16,
    /// The TC bit.
    pub truncated: bool,
    /// Whether an OPT record was present.
    pub edns: bool,
    /// The addresses at the end of the CNAME chain, in message order.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the records used; `u32::MAX` if none was.
    pub ttl: u32,
    /// The canonical name (lower-cased, with the root dot), when it differs from the question's.
    pub canonical: Option<String>,
    /// The negative-caching TTL.
    pub negative_ttl: Option<u32>,
}

/// Reads `msg` as the reply to the question it carries (an uncompressed name, a type, class IN),
/// with the ID it carries. `None` where the resolver would drop the reply.
pub fn parse_reply(msg: &[u8]) -> Option<ParsedReply> {
    let id = message::message_id(msg)?;
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qname = msg.get(HEADER_LEN..pos)?;
    let rtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    let reply = message::parse_reply(msg, id, qname, RecordType::from(rtype))?;
    Some(ParsedReply {
        rtype,
        rcode: u16::from(reply.rcode),
        truncated: reply.truncated,
        edns: reply.edns,
        addrs: reply.answer.addrs,
        ttl: reply.answer.ttl,
        canonical: reply
            .answer
            .canonical
            .map(|name| name.to_lowercase().to_string()),
        negative_ttl: reply.answer.negative_ttl,
    })
}
