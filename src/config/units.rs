//! Human-friendly units in the TOML file: durations (`"2s"`, `"72h"`, humantime) and byte sizes
//! (`"20GiB"`, `"500MB"`, or a plain integer of bytes).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a humantime string in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// No setting needs more; anything longer is a typo, and `Instant + d` would panic near u64::MAX s.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 36525 * 864);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "invalid duration `{text}` ({reason}); write e.g. \"2s\", \"500ms\", \"72h\", \"30days\""
    )]
    Invalid { text: String, reason: String },
    #[error("duration `{0}` is too long: at most 100 years")]
    TooLong(String),
}

impl HumanDuration {
    /// humantime's syntax (checked arithmetic: overflow is an error), at most [`MAX_DURATION`].
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| DurationError::Invalid {
            text: s.to_owned(),
            reason: e.to_string(),
        })?;
        if d > MAX_DURATION {
            return Err(DurationError::TooLong(s.to_owned()));
        }
        Ok(HumanDuration(d))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A byte count written as `"20GiB"`, `"500 MB"`, `"1.5G"` or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size `{0}`: write e.g. \"20GiB\", \"500MB\" or a number of bytes")]
    Invalid(String),
    #[error("invalid size unit `{unit}` in `{text}`: use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB")]
    Unit { unit: String, text: String },
    #[error("size `{0}` is too large")]
    TooLarge(String),
}

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, SizeError> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| SizeError::Invalid(s.to_owned()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(SizeError::Unit {
                    unit: other.to_owned(),
                    text: s.to_owned(),
                })
            }
        };
        let bytes = (value * mult as f64).round();
        // `as u64` would saturate silently; 2^64 itself is not representable either.
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(SizeError::TooLarge(s.to_owned()));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

/// `1536` -> `1.5 KiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("20GiB").unwrap().0, 20 << 30);
        assert_eq!(ByteSize::parse("500 MB").unwrap().0, 500_000_000);
        assert_eq!(ByteSize::parse("1.5k").unwrap().0, 1500);
        assert_eq!(ByteSize::parse("42").unwrap().0, 42);
        assert!(matches!(
            ByteSize::parse("12 parsecs"),
            Err(SizeError::Unit { .. })
        ));
        assert!(ByteSize::parse("lots").is_err());
        assert_eq!(
            ByteSize::parse("99999999999TiB"),
            Err(SizeError::TooLarge("99999999999TiB".into()))
        );
        assert_eq!(
            ByteSize::parse("18446744073709551616"),
            Err(SizeError::TooLarge("18446744073709551616".into()))
        );
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn durations_are_bounded_and_never_overflow() {
        assert_eq!(
            HumanDuration::parse("72h").unwrap().0,
            Duration::from_secs(72 * 3600)
        );
        assert!(HumanDuration::parse("100years").is_ok());
        for too_long in ["101years", "18446744073709551615s", "5000000000years"] {
            assert_eq!(
                HumanDuration::parse(too_long),
                Err(DurationError::TooLong(too_long.into())),
                "{too_long}"
            );
        }
        // Overflowing humantime's own arithmetic is an error too, not a panic.
        assert!(matches!(
            HumanDuration::parse("600000000000years"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            HumanDuration::parse("soon"),
            Err(DurationError::Invalid { .. })
        ));
    }
}
