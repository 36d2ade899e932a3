//! DNS replies: green's reader never panics on any bytes, and where both it and hickory-proto
//! accept a reply they agree on what it says (response code, TC, EDNS, the addresses at the end
//! of the CNAME chain, the TTL, the canonical name, the negative TTL).
#![no_main]

use std::net::IpAddr;

use green_net::dns::fuzz::{parse_reply, ParsedReply};
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};
use libfuzzer_sys::fuzz_target;

/// The reply as hickory-proto reads it, reduced with the resolver's rules (the same walk as
/// green's `read_answer`: up to 16 CNAME hops, the last CNAME of a pass is followed while no
/// address was found, the TTL is the minimum over the records used).
fn hickory_view(message: &Message, rtype: u16) -> ParsedReply {
    let question = &message.queries[0];
    let wanted = RecordType::from(rtype);
    let mut canonical: Name = question.name().clone();
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..16 {
        let mut next = None;
        for record in &message.answers {
            if record.name != canonical {
                continue;
            }
            match &record.data {
                RData::A(a) if wanted == RecordType::A => addrs.push(IpAddr::V4(a.0)),
                RData::AAAA(a) if wanted == RecordType::AAAA => addrs.push(IpAddr::V6(a.0)),
                RData::CNAME(target) => next = Some(target.0.clone()),
                _ => continue,
            }
            ttl = ttl.min(record.ttl);
        }
        match next {
            Some(target) if addrs.is_empty() => canonical = target,
            _ => break,
        }
    }
    let canonical = (&canonical != question.name()).then(|| canonical.to_lowercase().to_string());
    let negative_ttl = message.authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    });
    ParsedReply {
        rtype,
        rcode: u16::from(message.metadata.response_code),
        truncated: message.metadata.truncation,
        edns: message.edns.is_some(),
        addrs,
        ttl,
        canonical,
        negative_ttl,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(green) = parse_reply(data) else {
        return;
    };
    let Ok(message) = Message::from_vec(data) else {
        return;
    };
    assert_eq!(green, hickory_view(&message, green.rtype), "{message:?}");
});
