//! Object key prefixes in Firehose's expression language, parsed once (config time) and
//! evaluated per batch:
//!
//! - `!{timestamp:<pattern>}`: the batch's oldest arrival time in UTC, formatted with the Java
//!   `DateTimeFormatter` letters Firehose documents (`yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`, `ss`,
//!   `SSS`; other characters and `'quoted text'` are literal);
//! - `!{firehose:random-string}`: 11 characters; the caller supplies them, derived from the
//!   batch, so a retried upload of the same batch gets the same key and overwrites;
//! - `!{firehose:error-output-type}`: only in an error prefix (`processing-failed`, ...);
//! - `!{partitionKeyFromQuery:<field>}`: a top-level or dotted JSON field of the record
//!   (dynamic partitioning: one buffer per evaluated prefix).
//!
//! A data prefix without any expression gets `yyyy/MM/dd/HH/` appended, and no prefix at all
//! means `<delivery>/yyyy/MM/dd/HH/`, as Firehose does. Hand-written: Firehose's language is
//! small and no crate implements it; the date letters are mapped onto the `time` crate.

use crate::clock::UnixNanos;
use serde_json::Value;

/// Which kind of prefix: the error prefix may name the error output type, a data prefix not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    Data,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("unterminated expression at byte {at}: `!{{` needs a closing `}}`")]
    Unterminated { at: usize },
    #[error("unknown expression `!{{{0}}}`: use timestamp:<pattern>, firehose:random-string, firehose:error-output-type or partitionKeyFromQuery:<field>")]
    UnknownExpression(String),
    #[error("`!{{firehose:error-output-type}}` is only allowed in error_prefix")]
    ErrorTypeInDataPrefix,
    #[error("timestamp pattern `{pattern}`: letter `{letter}` is not supported (use yyyy, yy, MM, dd, HH, mm, ss, SSS; quote literal text with ')")]
    PatternLetter { pattern: String, letter: char },
    #[error("timestamp pattern `{0}` has an unterminated quote")]
    PatternQuote(String),
    #[error("partitionKeyFromQuery needs a field name, e.g. !{{partitionKeyFromQuery:camera}}")]
    EmptyField,
    #[error("a prefix must not start with `/`")]
    LeadingSlash,
}

/// Why a record's prefix cannot be evaluated (the record goes to the error prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the record is not a JSON object, so it has no field `{0}`")]
    NotJson(String),
    #[error("the record has no field `{0}`")]
    MissingField(String),
    #[error("field `{0}` is not a string, number or boolean")]
    NotScalar(String),
    #[error("field `{0}` is empty")]
    Empty(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Time(Vec<TimePart>),
    Random,
    ErrorType,
    Field(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePart {
    Literal(String),
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
}

/// A parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    parts: Vec<Part>,
}

/// What one evaluation needs.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// Arrival time of the batch's oldest record.
    pub arrival_ns: UnixNanos,
    /// The record, for `partitionKeyFromQuery` (None: a prefix that needs it fails).
    pub record: Option<&'a Value>,
    /// The 11 characters of `!{firehose:random-string}`, derived from the batch.
    pub random: &'a str,
    /// For error prefixes: `processing-failed`, `format-conversion-failed`, ...
    pub error_output_type: &'a str,
}

const DEFAULT_TIME: &str = "yyyy/MM/dd/HH/";

impl Prefix {
    /// Parses `text` (None: the default `<delivery>/yyyy/MM/dd/HH/`).
    pub fn parse(
        text: Option<&str>,
        delivery: &str,
        kind: PrefixKind,
    ) -> Result<Prefix, PrefixError> {
        let text = match text {
            Some(t) => t.to_string(),
            None => format!("{delivery}/!{{timestamp:{DEFAULT_TIME}}}"),
        };
        if text.starts_with('/') {
            return Err(PrefixError::LeadingSlash);
        }
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        let mut offset = 0;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let body_start = start + 2;
            let end = rest[body_start..]
                .find('}')
                .ok_or(PrefixError::Unterminated { at: offset + start })?;
            let body = &rest[body_start..body_start + end];
            parts.push(parse_expression(body, kind)?);
            offset += body_start + end + 1;
            rest = &rest[body_start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        let has_expression = parts.iter().any(|p| !matches!(p, Part::Literal(_)));
        if kind == PrefixKind::Data && !has_expression {
            parts.push(Part::Time(parse_pattern(DEFAULT_TIME)?));
        }
        Ok(Prefix { parts })
    }

    /// Whether records must be grouped by their evaluated prefix (dynamic partitioning).
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The fields `partitionKeyFromQuery` reads, dotted (for docs and DDL).
    pub fn partition_fields(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(path) => Some(path.join(".")),
                _ => None,
            })
            .collect()
    }

    /// The record's values of the `partitionKeyFromQuery` fields, in prefix order: what
    /// dynamic partitioning groups records by (time and random string are per batch).
    pub fn partition_values(&self, record: Option<&Value>) -> Result<Vec<String>, EvalError> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(path) => Some(field(record, path)),
                _ => None,
            })
            .collect()
    }

    /// The prefix of a batch whose records share `values` (from `partition_values`).
    pub fn render(
        &self,
        values: &[String],
        arrival_ns: UnixNanos,
        random: &str,
        error_output_type: &str,
    ) -> String {
        let t = utc(arrival_ns);
        let mut values = values.iter();
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Time(pattern) => format_time(&mut out, pattern, t),
                Part::Random => out.push_str(random),
                Part::ErrorType => out.push_str(error_output_type),
                Part::Field(_) => out.push_str(values.next().map_or("", String::as_str)),
            }
        }
        out
    }

    pub fn evaluate(&self, cx: &EvalContext) -> Result<String, EvalError> {
        let t = utc(cx.arrival_ns);
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Time(pattern) => format_time(&mut out, pattern, t),
                Part::Random => out.push_str(cx.random),
                Part::ErrorType => out.push_str(cx.error_output_type),
                Part::Field(path) => out.push_str(&field(cx.record, path)?),
            }
        }
        Ok(out)
    }
}

fn parse_expression(body: &str, kind: PrefixKind) -> Result<Part, PrefixError> {
    let (namespace, arg) = body.split_once(':').unwrap_or((body, ""));
    match (namespace.trim(), arg.trim()) {
        ("timestamp", pattern) => Ok(Part::Time(parse_pattern(pattern)?)),
        ("firehose", "random-string") => Ok(Part::Random),
        ("firehose", "error-output-type") => match kind {
            PrefixKind::Error => Ok(Part::ErrorType),
            PrefixKind::Data => Err(PrefixError::ErrorTypeInDataPrefix),
        },
        ("partitionKeyFromQuery", "") => Err(PrefixError::EmptyField),
        ("partitionKeyFromQuery", field) => Ok(Part::Field(
            field
                .trim_start_matches('.')
                .split('.')
                .map(str::to_string)
                .collect(),
        )),
        _ => Err(PrefixError::UnknownExpression(body.to_string())),
    }
}

fn parse_pattern(pattern: &str) -> Result<Vec<TimePart>, PrefixError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let literal = |out: &mut Vec<TimePart>, c: &str| match out.last_mut() {
        Some(TimePart::Literal(s)) => s.push_str(c),
        _ => out.push(TimePart::Literal(c.to_string())),
    };
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        if c == '\'' {
            let close = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or_else(|| PrefixError::PatternQuote(pattern.to_string()))?;
            let text: String = chars[i + 1..i + 1 + close].iter().collect();
            // '' is a literal quote.
            literal(&mut out, if text.is_empty() { "'" } else { &text });
            i += close + 2;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            literal(&mut out, &c.to_string());
            i += 1;
            continue;
        }
        let part = match (c, run) {
            ('y', 4) => TimePart::Year4,
            ('y', 2) => TimePart::Year2,
            ('M', 2) => TimePart::Month,
            ('d', 2) => TimePart::Day,
            ('H', 2) => TimePart::Hour,
            ('m', 2) => TimePart::Minute,
            ('s', 2) => TimePart::Second,
            ('S', 3) => TimePart::Millis,
            _ => {
                return Err(PrefixError::PatternLetter {
                    pattern: pattern.to_string(),
                    letter: c,
                })
            }
        };
        out.push(part);
        i += run;
    }
    Ok(out)
}

fn utc(ns: UnixNanos) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `ns` in UTC with a `!{timestamp:...}` pattern (object names use the same letters).
pub(super) fn format_timestamp(pattern: &str, ns: UnixNanos) -> Result<String, PrefixError> {
    let mut out = String::new();
    format_time(&mut out, &parse_pattern(pattern)?, utc(ns));
    Ok(out)
}

fn format_time(out: &mut String, pattern: &[TimePart], t: time::OffsetDateTime) {
    use std::fmt::Write;
    for p in pattern {
        let _ = match p {
            TimePart::Literal(s) => write!(out, "{s}"),
            TimePart::Year4 => write!(out, "{:04}", t.year()),
            TimePart::Year2 => write!(out, "{:02}", t.year().rem_euclid(100)),
            TimePart::Month => write!(out, "{:02}", u8::from(t.month())),
            TimePart::Day => write!(out, "{:02}", t.day()),
            TimePart::Hour => write!(out, "{:02}", t.hour()),
            TimePart::Minute => write!(out, "{:02}", t.minute()),
            TimePart::Second => write!(out, "{:02}", t.second()),
            TimePart::Millis => write!(out, "{:03}", t.millisecond()),
        };
    }
}

fn field(record: Option<&Value>, path: &[String]) -> Result<String, EvalError> {
    let name = path.join(".");
    let mut v = match record {
        Some(v @ Value::Object(_)) => v,
        _ => return Err(EvalError::NotJson(name)),
    };
    for key in path {
        v = v
            .get(key)
            .ok_or_else(|| EvalError::MissingField(name.clone()))?;
    }
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(EvalError::NotScalar(name)),
    };
    if s.is_empty() {
        return Err(EvalError::Empty(name));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-30T18:05:09.042Z
    const T: UnixNanos = 1_796_061_909_042_000_000;

    fn cx<'a>(record: Option<&'a Value>) -> EvalContext<'a> {
        EvalContext {
            arrival_ns: T,
            record,
            random: "a1B2c3D4e5F",
            error_output_type: "format-conversion-failed",
        }
    }

    fn eval(text: Option<&str>, kind: PrefixKind, record: Option<&Value>) -> String {
        Prefix::parse(text, "det", kind)
            .unwrap()
            .evaluate(&cx(record))
            .unwrap()
    }

    #[test]
    fn defaults_follow_firehose() {
        assert_eq!(eval(None, PrefixKind::Data, None), "det/2026/11/30/18/");
        // A prefix without expressions gets the UTC hour path appended.
        assert_eq!(
            eval(Some("archive/"), PrefixKind::Data, None),
            "archive/2026/11/30/18/"
        );
        // An error prefix is taken as written.
        assert_eq!(eval(Some("errors/"), PrefixKind::Error, None), "errors/");
    }

    #[test]
    fn hive_partitions_from_record_fields_and_time() {
        let rec = json!({"camera": "front", "meta": {"site": 7}, "detections": []});
        let p = Prefix::parse(
            Some("detections/camera=!{partitionKeyFromQuery:camera}/site=!{partitionKeyFromQuery:meta.site}/dt=!{timestamp:yyyy-MM-dd}/"),
            "det",
            PrefixKind::Data,
        )
        .unwrap();
        assert!(p.is_dynamic());
        assert_eq!(p.partition_fields(), ["camera", "meta.site"]);
        assert_eq!(
            p.evaluate(&cx(Some(&rec))).unwrap(),
            "detections/camera=front/site=7/dt=2026-11-30/"
        );
        assert_eq!(
            p.evaluate(&cx(Some(&json!({"camera": "x"})))),
            Err(EvalError::MissingField("meta.site".into()))
        );
        assert_eq!(
            p.evaluate(&cx(Some(&json!("text")))),
            Err(EvalError::NotJson("camera".into()))
        );
        assert_eq!(
            p.evaluate(&cx(Some(&json!({"camera": ["a"], "meta": {"site": 1}})))),
            Err(EvalError::NotScalar("camera".into()))
        );
    }

    #[test]
    fn error_prefix_random_string_and_time_letters() {
        assert_eq!(
            eval(
                Some("errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/!{firehose:random-string}-"),
                PrefixKind::Error,
                None
            ),
            "errors/format-conversion-failed/2026/11/30/a1B2c3D4e5F-"
        );
        assert_eq!(
            eval(
                Some("t=!{timestamp:yy'h'HH-mm-ss.SSS''}/"),
                PrefixKind::Data,
                None
            ),
            "t=26h18-05-09.042'/"
        );
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        let err = |t: &str, k| Prefix::parse(Some(t), "det", k).unwrap_err();
        assert_eq!(
            err("a/!{timestamp:yyyy", PrefixKind::Data),
            PrefixError::Unterminated { at: 2 }
        );
        assert!(matches!(
            err("!{nope:x}/", PrefixKind::Data),
            PrefixError::UnknownExpression(e) if e == "nope:x"
        ));
        assert_eq!(
            err("!{firehose:error-output-type}/", PrefixKind::Data),
            PrefixError::ErrorTypeInDataPrefix
        );
        assert!(matches!(
            err("!{timestamp:YYYY}/", PrefixKind::Data),
            PrefixError::PatternLetter { letter: 'Y', .. }
        ));
        assert!(matches!(
            err("!{timestamp:yyyy'x}/", PrefixKind::Data),
            PrefixError::PatternQuote(_)
        ));
        assert_eq!(
            err("!{partitionKeyFromQuery:}/", PrefixKind::Data),
            PrefixError::EmptyField
        );
        assert_eq!(err("/abs/", PrefixKind::Data), PrefixError::LeadingSlash);
        // Messages say what to write instead.
        assert!(err("!{nope}", PrefixKind::Data)
            .to_string()
            .contains("partitionKeyFromQuery"));
    }
}
