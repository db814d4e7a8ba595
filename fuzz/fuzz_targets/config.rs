//! The TOML config loader (parse + validation).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match vidgest::fuzzing::Config::parse(text) {
        Ok(config) => drop(format!("{config:?}")),
        Err(e) => drop(e.to_string()),
    }
});
