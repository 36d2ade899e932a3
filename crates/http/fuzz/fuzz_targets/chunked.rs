//! The chunked decoder: fed the input in pieces whose sizes come from the input itself, it never
//! panics, never produces more data than it consumed, and gives the same body and the same
//! verdict as when fed everything at once.
#![no_main]

use green_http::proto::{BodyDecoder, Decoded, Framing, ProtoError};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], step: usize) -> Result<(Vec<u8>, usize), ProtoError> {
    let mut decoder = BodyDecoder::new(Framing::Chunked).max_body(Some(1 << 20));
    let mut body = Vec::new();
    let mut pending = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    loop {
        let (event, used) = decoder.decode(&pending)?;
        assert!(used <= pending.len());
        consumed += used;
        match event {
            Decoded::Data(d) => {
                assert!(!d.is_empty() && d.len() <= used);
                body.extend_from_slice(d);
            }
            Decoded::End => return Ok((body, consumed)),
            Decoded::NeedMore => {
                if fed == data.len() {
                    decoder.eof()?;
                    return Ok((body, consumed));
                }
            }
        }
        pending.drain(..used);
        let end = (fed + step).min(data.len());
        pending.extend_from_slice(&data[fed..end]);
        fed = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let whole = run(data, data.len().max(1));
    let pieces = run(data, step);
    assert_eq!(whole, pieces);
});
