//! fMP4 fragment inspection and rewriting (clip export rebases every fragment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidgest::fuzzing::{inspect_fragment, rewrite_fragment, FragmentInfo};

fuzz_target!(|data: &[u8]| {
    let info = inspect_fragment(data);
    // 2^33 does not fit a version-0 tfdt: a foreign fragment's moof grows and must be relocated.
    for (seq, base) in [(1, 0), (7, 1u64 << 33)] {
        let Ok(out) = rewrite_fragment(data, seq, base) else {
            continue;
        };
        if let Ok(info) = &info {
            let expected = FragmentInfo {
                sequence_number: seq,
                base_decode_time: base,
                ..info.clone()
            };
            let got = inspect_fragment(&out);
            assert_eq!(got.as_ref().ok(), Some(&expected), "{got:?}");
        }
    }
});
