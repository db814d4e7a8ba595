//! SDP from a DESCRIBE answer. Input: `[content-type \0] body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = vidgest::fuzzing::sdp(body, content_type);
});
