//! Parsing of user-supplied points in time for the CLI: RFC 3339 (`2026-11-25T20:00:00Z`),
//! epoch seconds (`1764100800`, fractions allowed), `now`, and relative forms (`-5m`, `-1h30m`).

use crate::clock::UnixNanos;

#[derive(Debug, thiserror::Error)]
#[error("invalid time `{input}`: expected RFC 3339 (2026-11-25T20:00:00Z), epoch seconds (1764100800), `now` or a relative time like -5m or -1h30m")]
pub struct TimeSpecError {
    pub input: String,
}

/// Parses `input` relative to `now_ns`.
pub fn parse_time(input: &str, now_ns: UnixNanos) -> Result<UnixNanos, TimeSpecError> {
    let s = input.trim();
    let err = || TimeSpecError {
        input: input.to_string(),
    };
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ns);
    }
    if let Some(rel) = s.strip_prefix('-') {
        // `-5m`; a bare negative number is not accepted (ambiguous with epoch seconds).
        if rel.chars().next().is_some_and(|c| c.is_ascii_digit())
            && rel.chars().any(|c| c.is_ascii_alphabetic())
        {
            let d = humantime::parse_duration(rel).map_err(|_| err())?;
            return Ok(now_ns - d.as_nanos() as i64);
        }
        return Err(err());
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e9).round() as i64);
        }
        return Err(err());
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| err())?;
    Ok(t.unix_timestamp_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_100_800_000_000_000;

    #[test]
    fn parses_every_form() {
        assert_eq!(parse_time("now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("-5m", NOW).unwrap(), NOW - 300_000_000_000);
        assert_eq!(parse_time("-1h30m", NOW).unwrap(), NOW - 5_400_000_000_000);
        assert_eq!(parse_time("1764100800", NOW).unwrap(), NOW);
        assert_eq!(parse_time("1764100800.5", NOW).unwrap(), NOW + 500_000_000);
        assert_eq!(parse_time("2025-11-25T20:00:00Z", NOW).unwrap(), NOW);
        assert_eq!(parse_time("2025-11-25T21:00:00+01:00", NOW).unwrap(), NOW);
    }

    #[test]
    fn rejects_garbage_with_help() {
        for bad in ["", "yesterday", "-5", "-m5", "2025-13-01T00:00:00Z", "-1e9"] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
