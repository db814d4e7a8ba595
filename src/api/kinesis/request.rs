//! Typed access to request fields with the real service's validation messages.

use super::KinesisError;
use base64::Engine;
use serde_json::Value;

/// camelCase field name as the service's validation messages spell it.
fn member(field: &str) -> String {
    let mut c = field.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

pub struct Request<'a>(pub &'a Value);

impl<'a> Request<'a> {
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>, KinesisError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KinesisError::serialization(format!(
                "Unexpected value type for field {field}: expected a string"
            ))),
        }
    }

    pub fn str(&self, field: &str) -> Result<&'a str, KinesisError> {
        self.opt_str(field)?
            .ok_or_else(|| KinesisError::missing(&member(field)))
    }

    pub fn opt_i64(&self, field: &str) -> Result<Option<i64>, KinesisError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| {
                    KinesisError::serialization(format!("Invalid number for field {field}"))
                }),
            Some(_) => Err(KinesisError::serialization(format!(
                "Unexpected value type for field {field}: expected a number"
            ))),
        }
    }

    /// A timestamp: a number of epoch seconds, never NaN or infinite. Strings are refused as the
    /// service refuses them (no "NaN", "Infinity" or "1764000000" in quotes).
    pub fn opt_timestamp(&self, field: &str) -> Result<Option<f64>, KinesisError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    KinesisError::serialization(format!(
                        "Invalid number for field {field}: can not be converted to milliseconds since epoch"
                    ))
                }),
            Some(Value::String(_)) => Err(KinesisError::serialization(
                "class java.lang.String can not be converted to milliseconds since epoch",
            )),
            Some(_) => Err(KinesisError::serialization(format!(
                "Unexpected value type for field {field}"
            ))),
        }
    }

    pub fn opt_array(&self, field: &str) -> Result<Option<&'a Vec<Value>>, KinesisError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(KinesisError::serialization(format!(
                "Unexpected value type for field {field}: expected a list"
            ))),
        }
    }

    /// The stream from `StreamName`, or from `StreamARN` (`arn:aws:kinesis:r:a:stream/NAME`).
    pub fn stream_name(&self) -> Result<String, KinesisError> {
        if let Some(name) = self.opt_str("StreamName")? {
            check_stream_name(name)?;
            return Ok(name.to_string());
        }
        if let Some(arn) = self.opt_str("StreamARN")? {
            return arn
                .rsplit_once(":stream/")
                .map(|(_, n)| n.to_string())
                .ok_or_else(|| {
                    KinesisError::invalid_argument(format!("StreamARN {arn} is not a stream ARN"))
                });
        }
        Err(KinesisError::missing("streamName"))
    }
}

pub fn check_stream_name(name: &str) -> Result<(), KinesisError> {
    if name.is_empty() || name.len() > 128 {
        return Err(KinesisError::validation(
            "streamName",
            &format!("'{name}'"),
            "Member must have length less than or equal to 128",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(KinesisError::validation(
            "streamName",
            &format!("'{name}'"),
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// A record's `Data` (base64) and `PartitionKey`, validated.
pub fn record_parts(
    v: &Value,
    prefix: &str,
) -> Result<(String, Vec<u8>, Option<u128>), KinesisError> {
    let r = Request(v);
    let data_b64 = r
        .opt_str("Data")?
        .ok_or_else(|| KinesisError::missing(&format!("{prefix}data")))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data_b64)
        .map_err(|_| KinesisError::serialization("Base64 encoded data is invalid"))?;
    if data.len() > 1024 * 1024 {
        let n = data.len();
        return Err(KinesisError::validation(
            &format!("{prefix}data"),
            &format!("'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]'"),
            "Member must have length less than or equal to 1048576",
        ));
    }
    let key = r
        .opt_str("PartitionKey")?
        .ok_or_else(|| KinesisError::missing(&format!("{prefix}partitionKey")))?;
    let chars = key.chars().count();
    if chars == 0 || chars > 256 {
        let constraint = if chars == 0 {
            "Member must have length greater than or equal to 1"
        } else {
            "Member must have length less than or equal to 256"
        };
        return Err(KinesisError::validation(
            &format!("{prefix}partitionKey"),
            &format!("'{key}'"),
            constraint,
        ));
    }
    let ehk = match r.opt_str("ExplicitHashKey")? {
        None => None,
        Some(s) => Some(
            s.parse::<u128>()
                .ok()
                .filter(|_| !s.starts_with('+') && !s.is_empty())
                .ok_or_else(|| {
                    KinesisError::invalid_argument(format!(
                        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {s}"
                    ))
                })?,
        ),
    };
    Ok((key.to_string(), data, ehk))
}
