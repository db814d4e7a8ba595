//! WWW-Authenticate parsing and the Authorization answer. Input: `header \0 user \0 password \0
//! method \0 uri` (missing parts are empty).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\0');
    let mut next = || parts.next().unwrap_or("");
    let (header, user, password, method, uri) = (next(), next(), next(), next(), next());

    for (scheme, params) in vidgest::fuzzing::www_authenticate(header) {
        assert!(!scheme.is_empty());
        assert_eq!(scheme, scheme.to_ascii_lowercase());
        for (name, _) in params {
            assert_eq!(name, name.to_ascii_lowercase());
        }
    }

    let Some((scheme, first, second)) =
        vidgest::fuzzing::authorization(header, user, password, method, uri)
    else {
        return;
    };
    if scheme == "digest" {
        // Our own Authorization value must read back with the same username and uri (quoting).
        for answer in [&first, &second] {
            let parsed = vidgest::fuzzing::www_authenticate(answer);
            assert_eq!(parsed.len(), 1, "{answer:?} -> {parsed:?}");
            let (scheme, params) = &parsed[0];
            assert_eq!(scheme, "digest");
            let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            assert_eq!(param("username"), Some(user), "{answer:?}");
            assert_eq!(param("uri"), Some(uri), "{answer:?}");
        }
    } else {
        assert_eq!(first, second);
    }
});
