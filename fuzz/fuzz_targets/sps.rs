//! H.264 and H.265 sequence parameter sets (the same bytes go to both parsers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((w, h, fps)) = vidgest::fuzzing::sps_h264(data) {
        assert!(w > 0 && h > 0, "{w}x{h}");
        assert!(fps.is_none_or(|f| f.is_finite() && f > 0.0), "{fps:?}");
    }
    if let Some((w, h)) = vidgest::fuzzing::sps_h265(data) {
        assert!(
            (1..=16384).contains(&w) && (1..=16384).contains(&h),
            "{w}x{h}"
        );
    }
});
