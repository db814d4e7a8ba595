//! One function per Firehose operation.

use super::describe::describe;
use super::Deliveries;
use crate::api::kinesis::request::Request;
use crate::api::kinesis::{KinesisError, ACCOUNT};
use crate::api::ApiState;
use crate::config::DeliveryConfig;
use crate::streams::{PutRecord, PutResult, StreamError};
use base64::Engine;
use serde_json::{json, Value};

type OpResult = Result<Value, KinesisError>;

/// Largest `Data` of one record (the model's `Data` max: 1,000 KiB).
pub const MAX_RECORD_DATA: usize = 1_024_000;
/// Largest PutRecordBatch, data of all records together.
pub const MAX_BATCH_DATA: usize = 4 * 1024 * 1024;
pub const MAX_BATCH_RECORDS: usize = 500;

const DELIVERY_STREAM_TYPES: [&str; 4] = [
    "DirectPut",
    "KinesisStreamAsSource",
    "MSKAsSource",
    "DatabaseAsSource",
];

pub fn is_read_only(op: &str) -> bool {
    matches!(op, "ListDeliveryStreams" | "DescribeDeliveryStream")
}

pub async fn dispatch(state: &ApiState, op: &str, body: Value) -> OpResult {
    let req = Request(&body);
    match op {
        "PutRecord" => put_record(state, req).await,
        "PutRecordBatch" => put_record_batch(state, req).await,
        "ListDeliveryStreams" => list_delivery_streams(&state.firehose(), req),
        "DescribeDeliveryStream" => describe_delivery_stream(state, req),
        _ => Err(KinesisError::unknown_operation()),
    }
}

fn not_found(name: &str) -> KinesisError {
    KinesisError::not_found(format!(
        "Firehose {name} under account {ACCOUNT} not found."
    ))
}

/// A field as the service's validation messages spell it (camelCase).
fn member(field: &str) -> String {
    let mut c = field.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// `DeliveryStreamName`: present, 1..64 of `[a-zA-Z0-9_.-]` (the model's constraints).
fn delivery_name<'a>(req: &Request<'a>, field: &str) -> Result<Option<&'a str>, KinesisError> {
    let Some(name) = req.opt_str(field)? else {
        return Ok(None);
    };
    let member = member(field);
    let constraint = if name.is_empty() {
        "Member must have length greater than or equal to 1"
    } else if name.len() > 64 {
        "Member must have length less than or equal to 64"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    } else {
        return Ok(Some(name));
    };
    Err(KinesisError::validation(
        &member,
        &format!("'{name}'"),
        constraint,
    ))
}

fn required_delivery_name<'a>(req: &Request<'a>) -> Result<&'a str, KinesisError> {
    delivery_name(req, "DeliveryStreamName")?
        .ok_or_else(|| KinesisError::missing("deliveryStreamName"))
}

/// `min <= value <= max` of an optional integer, as the service words it.
fn opt_range(req: &Request, field: &str, min: i64, max: i64) -> Result<Option<i64>, KinesisError> {
    let Some(v) = req.opt_i64(field)? else {
        return Ok(None);
    };
    let constraint = if v < min {
        format!("Member must have value greater than or equal to {min}")
    } else if v > max {
        format!("Member must have value less than or equal to {max}")
    } else {
        return Ok(Some(v));
    };
    Err(KinesisError::validation(
        &member(field),
        &format!("'{v}'"),
        &constraint,
    ))
}

/// One record's `Data`, decoded (its size is checked by the caller, so that a batch reports
/// every oversized record at once as the service does).
fn record_data(v: &Value, member: &str) -> Result<Vec<u8>, KinesisError> {
    if !v.is_object() {
        return Err(KinesisError::serialization(
            "Start of structure or map found where not expected.",
        ));
    }
    let b64 = Request(v)
        .opt_str("Data")?
        .ok_or_else(|| KinesisError::missing(&format!("{member}data")))?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KinesisError::serialization("Base64 encoded data is invalid"))
}

/// The service's "N validation error(s) detected: ...; ..." for records over 1,000 KiB.
fn check_record_sizes(
    records: &[Vec<u8>],
    member: impl Fn(usize) -> String,
) -> Result<(), KinesisError> {
    let faults: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(_, d)| d.len() > MAX_RECORD_DATA)
        .map(|(i, d)| {
            let n = d.len();
            format!(
                "Value 'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]' at '{}data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_DATA}",
                member(i)
            )
        })
        .collect();
    if faults.is_empty() {
        return Ok(());
    }
    let count = match faults.len() {
        1 => "1 validation error".to_string(),
        n => format!("{n} validation errors"),
    };
    Err(KinesisError {
        kind: "ValidationException",
        message: format!("{count} detected: {}", faults.join("; ")),
        status: axum::http::StatusCode::BAD_REQUEST,
    })
}

/// `<ShardId>:<SequenceNumber>` of the record in the source stream: unique, stable, and all a
/// Kinesis reader needs to find it (GetShardIterator AT_SEQUENCE_NUMBER).
pub fn record_id(r: &PutResult) -> String {
    format!("{}:{}", r.shard_id, r.sequence_number)
}

/// A random partition key (UUID v4) per record, so that a delivery's records spread over the
/// source stream's shards.
fn source_record(data: Vec<u8>) -> PutRecord {
    PutRecord {
        partition_key: uuid::Uuid::new_v4().hyphenated().to_string(),
        explicit_hash_key: None,
        data,
    }
}

/// What became of one record.
enum Outcome {
    Written(PutResult),
    /// Over its shard's budget (source stream with `enforce_limits`): Firehose's "Slow down."
    Throttled,
    Failed(StreamError),
}

fn slow_down() -> KinesisError {
    KinesisError {
        kind: "ServiceUnavailableException",
        message: "Slow down.".into(),
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Which records exceed their shard's write budget when the source stream applies the real
/// service's limits (`[[stream]] enforce_limits`): the Firehose route must not bypass them.
fn throttled(
    state: &ApiState,
    delivery: &DeliveryConfig,
    records: &[PutRecord],
) -> Result<Vec<bool>, KinesisError> {
    if !state.limited_streams.lock().contains(&delivery.source) {
        return Ok(vec![false; records.len()]);
    }
    let info = state
        .streams
        .describe(&delivery.source)
        .map_err(|e| source_error(delivery, e))?;
    Ok(records
        .iter()
        .map(|r| {
            let h = crate::streams::hash_key(&r.partition_key);
            let shard = info
                .shards
                .iter()
                .find(|s| s.starting_hash_key <= h && h <= s.ending_hash_key)
                .map(|s| s.shard_id.as_str())
                .unwrap_or_default();
            !state.limits.try_write(
                &delivery.source,
                shard,
                r.data.len() + r.partition_key.len(),
            )
        })
        .collect())
}

fn source_error(delivery: &DeliveryConfig, e: StreamError) -> KinesisError {
    match e {
        // A delivery whose source does not exist (yet): the service is not able to take it.
        StreamError::NotFound(_) => KinesisError {
            kind: "ServiceUnavailableException",
            message: format!(
                "Firehose {} cannot take records now: its source stream {} does not exist.",
                delivery.name, delivery.source
            ),
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        },
        other => KinesisError::from_store(other),
    }
}

/// Appends the records to the delivery's source stream (one group commit, off the async
/// workers: the store fsyncs); outcomes in request order.
async fn append(
    state: &ApiState,
    delivery: &DeliveryConfig,
    data: Vec<Vec<u8>>,
) -> Result<Vec<Outcome>, KinesisError> {
    let records: Vec<PutRecord> = data.into_iter().map(source_record).collect();
    let throttled = throttled(state, delivery, &records)?;
    let to_write: Vec<PutRecord> = records
        .into_iter()
        .zip(&throttled)
        .filter(|(_, t)| !**t)
        .map(|(r, _)| r)
        .collect();
    let streams = state.streams.clone();
    let source = delivery.source.clone();
    let mut written = tokio::task::spawn_blocking(move || streams.put_many(&source, to_write))
        .await
        .map_err(|e| KinesisError::internal(format!("worker failed: {e}")))?
        .map_err(|e| source_error(delivery, e))?
        .into_iter();
    Ok(throttled
        .into_iter()
        .map(|t| {
            if t {
                return Outcome::Throttled;
            }
            match written.next() {
                Some(Ok(r)) => Outcome::Written(r),
                Some(Err(e)) => Outcome::Failed(e),
                None => Outcome::Failed(StreamError::InvalidArgument(
                    "no result for the record".into(),
                )),
            }
        })
        .collect())
}

/// The delivery's config as it is now (a reload may replace it during the request).
fn lookup(state: &ApiState, name: &str) -> Result<DeliveryConfig, KinesisError> {
    state
        .firehose()
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(name))
}

async fn put_record(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = required_delivery_name(&req)?;
    let record = req
        .0
        .get("Record")
        .filter(|v| !v.is_null())
        .ok_or_else(|| KinesisError::missing("record"))?;
    let data = vec![record_data(record, "record.")?];
    check_record_sizes(&data, |_| "record.".to_string())?;
    let delivery = lookup(state, name)?;
    match append(state, &delivery, data).await?.pop() {
        Some(Outcome::Written(r)) => Ok(json!({ "RecordId": record_id(&r), "Encrypted": false })),
        Some(Outcome::Throttled) => Err(slow_down()),
        Some(Outcome::Failed(e)) => Err(KinesisError::from_store(e)),
        None => Err(KinesisError::internal("no result for the record")),
    }
}

async fn put_record_batch(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = required_delivery_name(&req)?;
    let records = req
        .opt_array("Records")?
        .ok_or_else(|| KinesisError::missing("records"))?;
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        let c = if records.is_empty() {
            "Member must have length greater than or equal to 1".to_string()
        } else {
            format!("Member must have length less than or equal to {MAX_BATCH_RECORDS}")
        };
        return Err(KinesisError::validation("records", "'[...]'", &c));
    }
    let data = records
        .iter()
        .enumerate()
        .map(|(i, r)| record_data(r, &format!("records.{}.member.", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    check_record_sizes(&data, |i| format!("records.{}.member.", i + 1))?;
    if data.iter().map(Vec::len).sum::<usize>() > MAX_BATCH_DATA {
        return Err(KinesisError::invalid_argument(
            "Records size exceeds 4 MB limit",
        ));
    }
    let delivery = lookup(state, name)?;
    let mut failed = 0;
    let responses: Vec<Value> = append(state, &delivery, data)
        .await?
        .into_iter()
        .map(|o| match o {
            Outcome::Written(r) => json!({ "RecordId": record_id(&r) }),
            Outcome::Throttled => {
                failed += 1;
                let e = slow_down();
                json!({ "ErrorCode": e.kind, "ErrorMessage": e.message })
            }
            Outcome::Failed(e) => {
                failed += 1;
                tracing::warn!(delivery = %name, "PutRecordBatch record failed: {e}");
                json!({ "ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure." })
            }
        })
        .collect();
    Ok(json!({
        "FailedPutCount": failed,
        "Encrypted": false,
        "RequestResponses": responses,
    }))
}

fn list_delivery_streams(deliveries: &Deliveries, req: Request<'_>) -> OpResult {
    let limit = opt_range(&req, "Limit", 1, 10000)?.unwrap_or(10) as usize;
    let kind = req.opt_str("DeliveryStreamType")?;
    if let Some(k) = kind {
        if !DELIVERY_STREAM_TYPES.contains(&k) {
            return Err(KinesisError::validation(
                "deliveryStreamType",
                &format!("'{k}'"),
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    DELIVERY_STREAM_TYPES.join(", ")
                ),
            ));
        }
    }
    let after = delivery_name(&req, "ExclusiveStartDeliveryStreamName")?;
    // Every delivery takes PutRecord(Batch): all are DirectPut.
    let names: Vec<&String> = if kind.is_none_or(|k| k == "DirectPut") {
        deliveries
            .streams
            .keys()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .collect()
    } else {
        Vec::new()
    };
    let more = names.len() > limit;
    Ok(json!({
        "DeliveryStreamNames": names.into_iter().take(limit).collect::<Vec<_>>(),
        "HasMoreDeliveryStreams": more,
    }))
}

fn describe_delivery_stream(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = required_delivery_name(&req)?;
    opt_range(&req, "Limit", 1, 10000)?;
    let after = req.opt_str("ExclusiveStartDestinationId")?;
    let delivery = lookup(state, name)?;
    Ok(json!({
        "DeliveryStreamDescription": describe(&delivery, state.firehose().created_ns, after),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_records_are_all_named() {
        let ok = vec![0u8; MAX_RECORD_DATA];
        let big = vec![0u8; MAX_RECORD_DATA + 1];
        assert!(check_record_sizes(std::slice::from_ref(&ok), |_| "record.".into()).is_ok());
        let e = check_record_sizes(std::slice::from_ref(&big), |_| "record.".into()).unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 cap=1024001]' at 'record.data' failed to satisfy constraint: Member must have length less than or equal to 1024000"
        );
        let e = check_record_sizes(&[big.clone(), ok, big], |i| {
            format!("records.{}.member.", i + 1)
        })
        .unwrap_err();
        assert!(
            e.message.starts_with("2 validation errors detected: "),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("'records.1.member.data'"),
            "{}",
            e.message
        );
        assert!(e.message.contains("; Value "), "{}", e.message);
        assert!(
            e.message.contains("'records.3.member.data'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_follow_the_model() {
        let ok = json!({ "DeliveryStreamName": "a.b_c-1" });
        assert_eq!(required_delivery_name(&Request(&ok)).unwrap(), "a.b_c-1");
        for bad in ["", "has space", &"x".repeat(65)] {
            let v = json!({ "DeliveryStreamName": bad });
            let e = required_delivery_name(&Request(&v)).unwrap_err();
            assert_eq!(e.kind, "ValidationException", "{bad:?}");
            assert!(e.message.contains("'deliveryStreamName'"), "{}", e.message);
        }
        let e = required_delivery_name(&Request(&json!({}))).unwrap_err();
        assert!(
            e.message.contains("Member must not be null"),
            "{}",
            e.message
        );
    }

    #[test]
    fn list_pages_by_name_and_filters_by_type() {
        let mk = |name: &str| {
            super::super::test_delivery(&format!("name = \"{name}\"\nsource = \"detections\"\n"))
        };
        let d = Deliveries::new(&[mk("c"), mk("a"), mk("b")], 0);
        let list = |body: Value| list_delivery_streams(&d, Request(&body)).unwrap();
        assert_eq!(
            list(json!({})),
            json!({ "DeliveryStreamNames": ["a", "b", "c"], "HasMoreDeliveryStreams": false })
        );
        assert_eq!(
            list(json!({ "Limit": 2 })),
            json!({ "DeliveryStreamNames": ["a", "b"], "HasMoreDeliveryStreams": true })
        );
        assert_eq!(
            list(json!({ "Limit": 2, "ExclusiveStartDeliveryStreamName": "b" })),
            json!({ "DeliveryStreamNames": ["c"], "HasMoreDeliveryStreams": false })
        );
        assert_eq!(
            list(json!({ "DeliveryStreamType": "KinesisStreamAsSource" })),
            json!({ "DeliveryStreamNames": [], "HasMoreDeliveryStreams": false })
        );
        let e = list_delivery_streams(&d, Request(&json!({ "Limit": 0 }))).unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        let e = list_delivery_streams(&d, Request(&json!({ "DeliveryStreamType": "Nope" })))
            .unwrap_err();
        assert!(e.message.contains("enum value set"), "{}", e.message);
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;
    use crate::api::firehose::test_delivery;
    use crate::api::kinesis::IteratorKey;
    use crate::api::Auth;
    use crate::streams::{ShardStreams, ShardStreamsOptions, StartPosition};

    fn state(dir: &std::path::Path, deliveries: &[DeliveryConfig]) -> ApiState {
        state_with_clock(dir, deliveries, crate::clock::system_clock())
    }

    fn state_with_clock(
        dir: &std::path::Path,
        deliveries: &[DeliveryConfig],
        clock: crate::clock::SharedClock,
    ) -> ApiState {
        let streams =
            ShardStreams::open(dir, ShardStreamsOptions::default(), clock.clone()).unwrap();
        streams.create_stream("detections", 2, 24).unwrap();
        ApiState::new(streams, Auth::default(), clock, IteratorKey::random())
            .with_firehose(Deliveries::new(deliveries, 0))
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[tokio::test]
    async fn a_record_id_finds_the_record_in_the_source_stream() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(
            dir.path(),
            &[test_delivery("name = \"d\"\nsource = \"detections\"\n")],
        );
        let body = json!({ "DeliveryStreamName": "d", "Record": { "Data": b64(b"hello\n") } });
        let out = dispatch(&s, "PutRecord", body).await.unwrap();
        assert_eq!(out["Encrypted"], false);
        let id = out["RecordId"].as_str().unwrap();
        let (shard, seq) = id.split_once(':').unwrap();
        let pos = s
            .streams
            .resolve("detections", shard, StartPosition::AtSequence(seq.into()))
            .unwrap();
        let got = s
            .streams
            .read("detections", shard, pos, 1, 1 << 20)
            .unwrap();
        assert_eq!(got.records[0].data, b"hello\n");
        assert_eq!(got.records[0].sequence_number, seq);
        let key = uuid::Uuid::parse_str(&got.records[0].partition_key).unwrap();
        assert_eq!(key.get_version_num(), 4);
    }

    /// A delivery whose source stream is missing (a camera's detection stream before the camera
    /// created it) cannot take records: retryable 503, nothing written elsewhere.
    #[tokio::test]
    async fn a_missing_source_is_service_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_delivery("name = \"d\"\nsource = \"detections\"\n");
        d.source = "not-yet".into();
        let s = state(dir.path(), &[d]);
        for (op, body) in [
            (
                "PutRecord",
                json!({ "DeliveryStreamName": "d", "Record": { "Data": b64(b"x") } }),
            ),
            (
                "PutRecordBatch",
                json!({ "DeliveryStreamName": "d", "Records": [{ "Data": b64(b"x") }] }),
            ),
        ] {
            let e = dispatch(&s, op, body).await.unwrap_err();
            assert_eq!(e.kind, "ServiceUnavailableException", "{op}");
            assert_eq!(
                e.status,
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "{op}"
            );
            assert!(e.message.contains("not-yet"), "{}", e.message);
        }
        // the description does not depend on the source existing
        let out = dispatch(
            &s,
            "DescribeDeliveryStream",
            json!({ "DeliveryStreamName": "d" }),
        )
        .await
        .unwrap();
        assert_eq!(
            out["DeliveryStreamDescription"]["DeliveryStreamStatus"],
            "ACTIVE"
        );
    }

    /// A source stream with `enforce_limits` keeps its per-shard write budget (1000 records/s)
    /// for Firehose puts too: records beyond it fail alone with "Slow down.".
    #[tokio::test]
    async fn a_limited_source_throttles_records_alone() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(1_764_000_000_000_000_000);
        let s = state_with_clock(
            dir.path(),
            &[test_delivery("name = \"d\"\nsource = \"detections\"\n")],
            clock.clone(),
        );
        s.enforce_limits("detections", true);
        let batch = json!({
            "DeliveryStreamName": "d",
            "Records": vec![json!({ "Data": b64(b"r") }); 500],
        });
        let (mut written, mut throttled) = (0, 0);
        for _ in 0..5 {
            let out = dispatch(&s, "PutRecordBatch", batch.clone()).await.unwrap();
            let entries = out["RequestResponses"].as_array().unwrap();
            let slow = entries
                .iter()
                .filter(|e| e["ErrorCode"] == "ServiceUnavailableException")
                .inspect(|e| assert_eq!(e["ErrorMessage"], "Slow down."))
                .count();
            assert_eq!(out["FailedPutCount"], slow);
            throttled += slow;
            written += entries.iter().filter(|e| e["RecordId"].is_string()).count();
        }
        // 2 shards x 1000 records; 2,500 random keys overfill both (by ~10 sigma)
        assert_eq!((written, throttled), (2000, 500));
        let one = json!({ "DeliveryStreamName": "d", "Record": { "Data": b64(b"r") } });
        let e = dispatch(&s, "PutRecord", one.clone()).await.unwrap_err();
        assert_eq!(
            (e.kind, e.status.as_u16()),
            ("ServiceUnavailableException", 503)
        );
        clock.advance(std::time::Duration::from_secs(1));
        dispatch(&s, "PutRecord", one).await.unwrap();
    }
}
