//! The CBOR variant of the protocol (`Content-Type: application/x-amz-cbor-1.1`, same
//! `X-Amz-Target`), which the Java SDKs (and so KCL and KPL) use by default. A CBOR request is
//! turned into the JSON tree the operations already take, and the answer tree back into CBOR:
//!
//! * blobs (`Data`) are CBOR byte strings on the wire and base64 strings in the tree;
//! * timestamps are epoch *milliseconds* on the wire (the Java SDKs write tag 1 + an integer of
//!   milliseconds and read timestamps as milliseconds: `AwsCborProtocolFactory` uses
//!   `UNIX_TIMESTAMP_MILLIS` for payloads) and epoch seconds in the tree, as in JSON;
//! * errors carry `__type` and `message` like the JSON ones.

use super::KinesisError;
use base64::Engine;
use ciborium::Value as Cbor;
use serde_json::{Number, Value as Json};

pub const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";
const TAG_EPOCH: u64 = 1;
/// Request members that are timestamps.
const REQUEST_TIMESTAMPS: &[&str] = &["Timestamp"];
/// Answer members that are timestamps.
const RESPONSE_TIMESTAMPS: &[&str] = &["ApproximateArrivalTimestamp", "StreamCreationTimestamp"];
/// Answer members that are blobs.
const RESPONSE_BLOBS: &[&str] = &["Data"];

fn malformed(what: &str) -> KinesisError {
    KinesisError::serialization(format!("Malformed CBOR request: {what}"))
}

/// A CBOR request body as the JSON tree of the same request.
pub fn decode(body: &[u8]) -> Result<Json, KinesisError> {
    let value: Cbor = ciborium::de::from_reader(body).map_err(|e| malformed(&format!("{e}")))?;
    match value {
        Cbor::Map(_) => to_json(value, None),
        _ => Err(KinesisError::serialization(
            "Start of structure or map found where not expected.",
        )),
    }
}

fn number(n: f64) -> Result<Json, KinesisError> {
    Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| malformed(&format!("{n} is not a finite number")))
}

/// Epoch milliseconds on the wire -> epoch seconds in the tree.
fn millis_to_seconds(v: Cbor) -> Result<Json, KinesisError> {
    match to_json(v, None)? {
        Json::Number(n) => number(n.as_f64().unwrap_or(f64::NAN) / 1000.0),
        // not a number: let the operation report the type error
        other => Ok(other),
    }
}

fn to_json(v: Cbor, field: Option<&str>) -> Result<Json, KinesisError> {
    let is_timestamp = field.is_some_and(|f| REQUEST_TIMESTAMPS.contains(&f));
    Ok(match v {
        Cbor::Tag(TAG_EPOCH, inner) => millis_to_seconds(*inner)?,
        Cbor::Tag(_, inner) => to_json(*inner, field)?,
        Cbor::Integer(_) | Cbor::Float(_) if is_timestamp => millis_to_seconds(v)?,
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(n) = i64::try_from(i) {
                Json::from(n)
            } else if let Ok(n) = u64::try_from(i) {
                Json::from(n)
            } else {
                return Err(malformed(&format!("integer {i} out of range")));
            }
        }
        Cbor::Float(f) => number(f)?,
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Text(s) => Json::String(s),
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Null => Json::Null,
        Cbor::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|x| to_json(x, field))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut out = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(malformed("map keys must be text"));
                };
                let v = to_json(v, Some(&k))?;
                out.insert(k, v);
            }
            Json::Object(out)
        }
        _ => return Err(malformed("unsupported CBOR item")),
    })
}

/// An answer tree as CBOR bytes (an empty map for an answer without members).
pub fn encode(v: &Json) -> Vec<u8> {
    let value = if v.is_null() {
        Cbor::Map(Vec::new())
    } else {
        to_cbor(v, None)
    };
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("writing CBOR to memory cannot fail");
    out
}

fn to_cbor(v: &Json, field: Option<&str>) -> Cbor {
    match v {
        Json::Number(n) if field.is_some_and(|f| RESPONSE_TIMESTAMPS.contains(&f)) => {
            let millis = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            Cbor::Tag(TAG_EPOCH, Box::new(Cbor::Integer(millis.into())))
        }
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) if field.is_some_and(|f| RESPONSE_BLOBS.contains(&f)) => {
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Cbor::Bytes(b),
                Err(_) => Cbor::Text(s.clone()),
            }
        }
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Null => Cbor::Null,
        Json::Array(items) => Cbor::Array(items.iter().map(|x| to_cbor(x, field)).collect()),
        Json::Object(map) => Cbor::Map(
            map.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v, Some(k))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cbor(v: Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&v, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> Cbor {
        Cbor::Text(s.into())
    }

    #[test]
    fn request_blobs_and_millisecond_timestamps_become_the_json_tree() {
        // As the Java SDK writes a PutRecord and a GetShardIterator AT_TIMESTAMP.
        let put = Cbor::Map(vec![
            (text("StreamName"), text("s")),
            (text("Data"), Cbor::Bytes(vec![0, 1, 2, 255])),
            (text("PartitionKey"), text("k")),
        ]);
        assert_eq!(
            decode(&cbor(put)).unwrap(),
            json!({"StreamName": "s", "Data": "AAEC/w==", "PartitionKey": "k"})
        );
        let it = Cbor::Map(vec![
            (text("ShardIteratorType"), text("AT_TIMESTAMP")),
            (
                text("Timestamp"),
                Cbor::Tag(1, Box::new(Cbor::Integer(1_764_000_000_123i64.into()))),
            ),
        ]);
        assert_eq!(
            decode(&cbor(it)).unwrap(),
            json!({"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1_764_000_000.123})
        );
        // untagged, in a timestamp member: milliseconds as well
        let it = Cbor::Map(vec![(text("Timestamp"), Cbor::Float(1_764_000_000_500.0))]);
        assert_eq!(
            decode(&cbor(it)).unwrap(),
            json!({"Timestamp": 1_764_000_000.5})
        );
    }

    #[test]
    fn malformed_requests_are_serialization_errors() {
        for body in [
            vec![0xff],
            cbor(Cbor::Array(vec![])),
            cbor(Cbor::Map(vec![(Cbor::Integer(1.into()), text("x"))])),
            cbor(Cbor::Map(vec![(text("Timestamp"), Cbor::Float(f64::NAN))])),
            cbor(Cbor::Map(vec![(
                text("Timestamp"),
                Cbor::Tag(1, Box::new(Cbor::Float(f64::INFINITY))),
            )])),
        ] {
            let e = decode(&body).unwrap_err();
            assert_eq!(e.kind, "SerializationException", "{body:x?}: {e:?}");
        }
    }

    #[test]
    fn answers_carry_byte_strings_and_tagged_millisecond_timestamps() {
        let tree = json!({
            "Records": [{
                "SequenceNumber": "1",
                "ApproximateArrivalTimestamp": 1_764_000_000.123,
                "Data": "AAEC/w==",
                "PartitionKey": "k",
            }],
            "MillisBehindLatest": 0,
        });
        let back: Cbor = ciborium::de::from_reader(&encode(&tree)[..]).unwrap();
        fn member(map: &Cbor, name: &str) -> Cbor {
            let Cbor::Map(entries) = map else {
                panic!("not a map: {map:?}")
            };
            let key = Cbor::Text(name.into());
            entries.iter().find(|(k, _)| *k == key).unwrap().1.clone()
        }
        let Cbor::Array(records) = member(&back, "Records") else {
            panic!("{back:?}")
        };
        let rec = &records[0];
        assert_eq!(member(rec, "Data"), Cbor::Bytes(vec![0, 1, 2, 255]));
        assert_eq!(
            member(rec, "ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Integer(1_764_000_000_123i64.into())))
        );
        assert_eq!(member(rec, "SequenceNumber"), text("1"));
        assert_eq!(member(&back, "MillisBehindLatest"), Cbor::Integer(0.into()));
        assert_eq!(encode(&Json::Null), vec![0xa0]);
    }
}
