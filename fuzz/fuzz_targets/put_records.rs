//! The PutRecords fast path against the general path: whatever the fast path accepts, the general
//! path must accept with the same stream name and records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = vidgest::fuzzing::fast_parse_put_records(data) {
        let general = vidgest::fuzzing::general_parse_put_records(data);
        assert_eq!(Some(&fast), general.as_ref());
    }
});
