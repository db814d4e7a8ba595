//! One function per Kinesis operation.

use super::iterator::{self, IteratorAge, ShardIterator};
use super::request::{check_stream_name, record_parts, Request};
use super::{stream_arn, KinesisError, ACCOUNT};
use crate::api::ApiState;
use crate::streams::{
    PutRecord, ShardInfo, ShardStreams, StartPosition, StreamInfo, MAX_RECORD_BYTES,
};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;

type OpResult = Result<Value, KinesisError>;

const MAX_SHARDS: i64 = 64;
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;

/// Operations that change the daemon's policy (which streams exist, how long they keep
/// records) rather than its data: they need the admin scope.
pub fn is_admin(op: &str) -> bool {
    matches!(
        op,
        "CreateStream"
            | "DeleteStream"
            | "IncreaseStreamRetentionPeriod"
            | "DecreaseStreamRetentionPeriod"
    )
}

pub fn is_read_only(op: &str) -> bool {
    matches!(
        op,
        "ListStreams"
            | "DescribeStream"
            | "DescribeStreamSummary"
            | "ListShards"
            | "GetShardIterator"
            | "GetRecords"
    )
}

pub async fn dispatch(state: &ApiState, op: &str, body: Value) -> OpResult {
    let req = Request(&body);
    match op {
        "CreateStream" => create_stream(state, req).await,
        "DeleteStream" => delete_stream(state, req).await,
        "ListStreams" => list_streams(state, req),
        "DescribeStream" => describe_stream(state, req),
        "DescribeStreamSummary" => describe_stream_summary(state, req),
        "ListShards" => list_shards(state, req),
        "PutRecord" => put_record(state, req).await,
        "PutRecords" => put_records(state, req).await,
        "GetShardIterator" => get_shard_iterator(state, req).await,
        "GetRecords" => get_records(state, req).await,
        "IncreaseStreamRetentionPeriod" => change_retention(state, req, true).await,
        "DecreaseStreamRetentionPeriod" => change_retention(state, req, false).await,
        _ => Err(KinesisError::unknown_operation()),
    }
}

/// `min <= value <= max`, or the service's ValidationException for the bound that is broken.
fn check_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), KinesisError> {
    let constraint = if value < min {
        format!("Member must have value greater than or equal to {min}")
    } else if value > max {
        format!("Member must have value less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(KinesisError::validation(
        field,
        &format!("'{value}'"),
        &constraint,
    ))
}

/// Runs blocking store work (fsync, file reads) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(Arc<ShardStreams>) -> Result<T, KinesisError> + Send + 'static,
) -> Result<T, KinesisError> {
    let store = state.streams.clone();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|e| KinesisError::internal(format!("worker failed: {e}")))?
}

fn describe(state: &ApiState, stream: &str) -> Result<StreamInfo, KinesisError> {
    state.streams.describe(stream).map_err(|e| match e {
        crate::streams::StreamError::NotFound(_) => KinesisError::stream_not_found(stream),
        other => KinesisError::from_store(other),
    })
}

fn epoch_seconds(ns: i64) -> f64 {
    // Millisecond precision, as the service returns.
    (ns / 1_000_000) as f64 / 1000.0
}

fn shard_json(s: &ShardInfo) -> Value {
    json!({
        "ShardId": s.shard_id,
        "HashKeyRange": {
            "StartingHashKey": s.starting_hash_key.to_string(),
            "EndingHashKey": s.ending_hash_key.to_string(),
        },
        "SequenceNumberRange": { "StartingSequenceNumber": s.starting_sequence_number },
    })
}

async fn create_stream(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.str("StreamName")?.to_string();
    check_stream_name(&name)?;
    let on_demand = req
        .0
        .pointer("/StreamModeDetails/StreamMode")
        .and_then(|v| v.as_str())
        == Some("ON_DEMAND");
    let shards = match req.opt_i64("ShardCount")? {
        Some(n) => n,
        None if on_demand => 4,
        None => return Err(KinesisError::missing("shardCount")),
    };
    if shards < 1 {
        return Err(KinesisError::validation(
            "shardCount",
            &shards.to_string(),
            "Member must have value greater than or equal to 1",
        ));
    }
    if shards > MAX_SHARDS {
        return Err(KinesisError::limit_exceeded(format!(
            "This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. Limit: {MAX_SHARDS}. Number of additional shards that would have resulted from this request: {shards}."
        )));
    }
    blocking(state, move |s| {
        s.create_stream(&name, shards as u32, 24)
            .map_err(|e| match e {
                crate::streams::StreamError::InUse(_) => KinesisError::in_use(format!(
                    "Stream {name} under account {ACCOUNT} already exists."
                )),
                other => KinesisError::from_store(other),
            })
    })
    .await?;
    Ok(Value::Null)
}

async fn delete_stream(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.stream_name()?;
    describe(state, &name)?;
    state.enforce_limits(&name, false);
    blocking(state, move |s| {
        s.delete_stream(&name).map_err(KinesisError::from_store)
    })
    .await?;
    Ok(Value::Null)
}

fn list_streams(state: &ApiState, req: Request<'_>) -> OpResult {
    let limit = req.opt_i64("Limit")?.unwrap_or(100);
    if !(1..=10000).contains(&limit) {
        return Err(KinesisError::validation(
            "limit",
            &limit.to_string(),
            "Member must have value between 1 and 10000",
        ));
    }
    let after = req.opt_str("ExclusiveStartStreamName")?.map(str::to_string);
    let all: Vec<String> = state
        .streams
        .list_streams()
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let more = all.len() > limit as usize;
    let names: Vec<String> = all.into_iter().take(limit as usize).collect();
    let summaries: Vec<Value> = names
        .iter()
        .filter_map(|n| state.streams.describe(n).ok())
        .map(|d| {
            json!({
                "StreamName": d.name,
                "StreamARN": stream_arn(&d.name),
                "StreamStatus": d.status,
                "StreamModeDetails": { "StreamMode": "PROVISIONED" },
                "StreamCreationTimestamp": epoch_seconds(d.created_ns),
            })
        })
        .collect();
    Ok(json!({ "StreamNames": names, "HasMoreStreams": more, "StreamSummaries": summaries }))
}

fn describe_stream(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.stream_name()?;
    let d = describe(state, &name)?;
    let limit = req.opt_i64("Limit")?.unwrap_or(100);
    check_range("limit", limit, 1, 10000)?;
    let limit = limit as usize;
    let after = req
        .opt_str("ExclusiveStartShardId")?
        .map(normalize_shard_id);
    let shards: Vec<&ShardInfo> = d
        .shards
        .iter()
        .filter(|s| after.as_ref().is_none_or(|a| &s.shard_id > a))
        .collect();
    let more = shards.len() > limit;
    Ok(json!({
        "StreamDescription": {
            "StreamName": d.name,
            "StreamARN": stream_arn(&d.name),
            "StreamStatus": d.status,
            "StreamModeDetails": { "StreamMode": "PROVISIONED" },
            "Shards": shards.iter().take(limit).map(|s| shard_json(s)).collect::<Vec<_>>(),
            "HasMoreShards": more,
            "RetentionPeriodHours": d.retention_hours,
            "StreamCreationTimestamp": epoch_seconds(d.created_ns),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
        }
    }))
}

fn describe_stream_summary(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.stream_name()?;
    let d = describe(state, &name)?;
    Ok(json!({
        "StreamDescriptionSummary": {
            "StreamName": d.name,
            "StreamARN": stream_arn(&d.name),
            "StreamStatus": d.status,
            "StreamModeDetails": { "StreamMode": "PROVISIONED" },
            "RetentionPeriodHours": d.retention_hours,
            "StreamCreationTimestamp": epoch_seconds(d.created_ns),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
            "OpenShardCount": d.shards.len(),
            "ConsumerCount": 0,
        }
    }))
}

fn list_shards(state: &ApiState, req: Request<'_>) -> OpResult {
    // NextToken carries the stream and the last shard returned.
    let (name, after) = match req.opt_str("NextToken")? {
        Some(token) => {
            if req.opt_str("StreamName")?.is_some() {
                return Err(KinesisError::invalid_argument(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once('\n')
                        .map(|(a, b)| (a.to_string(), Some(b.to_string())))
                })
                .ok_or_else(|| KinesisError::invalid_argument("Invalid NextToken."))?;
            decoded
        }
        None => (
            req.stream_name()?,
            req.opt_str("ExclusiveStartShardId")?
                .map(normalize_shard_id),
        ),
    };
    let d = describe(state, &name)?;
    let max = req.opt_i64("MaxResults")?.unwrap_or(1000);
    if !(1..=10000).contains(&max) {
        return Err(KinesisError::validation(
            "maxResults",
            &max.to_string(),
            "Member must have value between 1 and 10000",
        ));
    }
    let shards: Vec<&ShardInfo> = d
        .shards
        .iter()
        .filter(|s| after.as_ref().is_none_or(|a| &s.shard_id > a))
        .collect();
    let page: Vec<Value> = shards
        .iter()
        .take(max as usize)
        .map(|s| shard_json(s))
        .collect();
    let mut out = json!({ "Shards": page });
    if shards.len() > max as usize {
        let last = &shards[max as usize - 1].shard_id;
        out["NextToken"] =
            json!(base64::engine::general_purpose::STANDARD.encode(format!("{name}\n{last}")));
    }
    Ok(out)
}

/// Accepts `shardId-000000000001` and the short forms clients sometimes send (`1`, `shardId-1`).
fn normalize_shard_id(id: &str) -> String {
    let digits = id.strip_prefix("shardId-").unwrap_or(id);
    match digits.parse::<u64>() {
        Ok(n) if !digits.is_empty() => format!("shardId-{n:012}"),
        _ => id.to_string(),
    }
}

fn shard_for(info: &StreamInfo, key: &str, ehk: Option<u128>) -> String {
    let h = ehk.unwrap_or_else(|| crate::streams::hash_key(key));
    info.shards
        .iter()
        .find(|s| s.starting_hash_key <= h && h <= s.ending_hash_key)
        .map(|s| s.shard_id.clone())
        .unwrap_or_default()
}

fn limited(state: &ApiState, stream: &str) -> bool {
    state.limited_streams.lock().contains(stream)
}

async fn put_record(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.stream_name()?;
    let (key, data, ehk) = record_parts(req.0, "")?;
    let info = describe(state, &name)?;
    if limited(state, &name) {
        let shard = shard_for(&info, &key, ehk);
        if !state
            .limits
            .try_write(&name, &shard, data.len() + key.len())
        {
            return Err(KinesisError::throughput(&name, &shard));
        }
    }
    let rec = PutRecord {
        partition_key: key,
        explicit_hash_key: ehk,
        data,
    };
    let r = blocking(state, move |s| {
        s.put(&name, rec).map_err(KinesisError::from_store)
    })
    .await?;
    Ok(json!({ "ShardId": r.shard_id, "SequenceNumber": r.sequence_number }))
}

async fn put_records(state: &ApiState, req: Request<'_>) -> OpResult {
    let (name, parsed) = parse_put_records(req)?;
    let out = write_records(state, name, parsed).await?;
    serde_json::to_value(out).map_err(|e| KinesisError::internal(e.to_string()))
}

/// The general (validating) parse of a PutRecords request; the fast path must agree with it.
pub(crate) fn parse_put_records(
    req: Request<'_>,
) -> Result<(String, Vec<PutRecord>), KinesisError> {
    let name = req.stream_name()?;
    let records = req
        .opt_array("Records")?
        .ok_or_else(|| KinesisError::missing("records"))?;
    if records.is_empty() || records.len() > 500 {
        let c = if records.is_empty() {
            "Member must have length greater than or equal to 1"
        } else {
            "Member must have length less than or equal to 500"
        };
        return Err(KinesisError::validation("records", "'[...]'", c));
    }
    let mut parsed = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let (key, data, ehk) = record_parts(r, &format!("records.{}.member.", i + 1))?;
        parsed.push(PutRecord {
            partition_key: key,
            explicit_hash_key: ehk,
            data,
        });
    }
    Ok((name, parsed))
}

/// PutRecords of well-formed requests without a generic JSON tree: borrowed strings, base64
/// decoded straight into the record. Anything unusual returns None and takes the general path,
/// which produces the service's exact validation errors.
pub fn fast_parse_put_records(body: &[u8]) -> Option<(String, Vec<PutRecord>)> {
    // Unknown fields take the general path: serde_json skips an ignored value without checking
    // it (invalid UTF-8, numbers out of range), where the general path refuses the request
    // (found by fuzzing).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req<'a> {
        #[serde(rename = "StreamName", borrow)]
        stream_name: &'a str,
        #[serde(rename = "Records", borrow)]
        records: Vec<Obj<Rec<'a>>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rec<'a> {
        #[serde(rename = "Data", borrow)]
        data: &'a str,
        #[serde(rename = "PartitionKey", borrow)]
        partition_key: &'a str,
        /// Present: take the general path (it validates the key).
        #[serde(rename = "ExplicitHashKey", borrow, default)]
        explicit_hash_key: Option<&'a str>,
    }
    let Obj(req): Obj<Req> = serde_json::from_slice(body).ok()?;
    if req.records.is_empty()
        || req.records.len() > 500
        || check_stream_name(req.stream_name).is_err()
    {
        return None;
    }
    let mut out = Vec::with_capacity(req.records.len());
    for Obj(r) in &req.records {
        let key_chars = r.partition_key.chars().count();
        if key_chars == 0 || key_chars > 256 || r.explicit_hash_key.is_some() {
            return None;
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(r.data)
            .ok()?;
        if data.len() > 1024 * 1024 {
            return None;
        }
        out.push(PutRecord {
            partition_key: r.partition_key.to_string(),
            explicit_hash_key: None,
            data,
        });
    }
    Some((req.stream_name.to_string(), out))
}

/// `T` from a JSON object only: serde's derived structs also accept an array of the field values
/// (`["name", [["AAAA", "key"]]]`), which the general path refuses (found by fuzzing).
struct Obj<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(MapOnly(std::marker::PhantomData))
            .map(Obj)
    }
}

#[derive(serde::Serialize)]
pub struct PutRecordsOut {
    #[serde(rename = "FailedRecordCount")]
    failed: u32,
    #[serde(rename = "Records")]
    records: Vec<PutRecordsEntry>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum PutRecordsEntry {
    Ok {
        #[serde(rename = "ShardId")]
        shard_id: String,
        #[serde(rename = "SequenceNumber")]
        sequence_number: String,
    },
    Failed {
        #[serde(rename = "ErrorCode")]
        code: &'static str,
        #[serde(rename = "ErrorMessage")]
        message: String,
    },
}

/// The write half of PutRecords: limits, one group commit, per-record results in order.
pub async fn write_records(
    state: &ApiState,
    name: String,
    parsed: Vec<PutRecord>,
) -> Result<PutRecordsOut, KinesisError> {
    // Data alone is checked while parsing (ValidationException); key + data here, for the whole
    // request like PutRecord, rather than as a retryable per-record InternalFailure.
    if let Some((i, size)) = parsed
        .iter()
        .map(|r| r.partition_key.len() + r.data.len())
        .enumerate()
        .find(|(_, size)| *size > MAX_RECORD_BYTES)
    {
        return Err(KinesisError::invalid_argument(format!(
            "Record size exceeds the maximum allowed size of 1 MiB: partition key + data of records.{} are {size} bytes.",
            i + 1
        )));
    }
    let total: usize = parsed
        .iter()
        .map(|r| r.partition_key.len() + r.data.len())
        .sum();
    if total > 5 * 1024 * 1024 {
        return Err(KinesisError::invalid_argument(
            "Records size exceeds 5 MB limit",
        ));
    }
    let info = describe(state, &name)?;
    // With limits, records over their shard's budget fail individually; the rest are written.
    let mut throttled: Vec<Option<String>> = vec![None; parsed.len()];
    if limited(state, &name) {
        for (i, r) in parsed.iter().enumerate() {
            let shard = shard_for(&info, &r.partition_key, r.explicit_hash_key);
            if !state
                .limits
                .try_write(&name, &shard, r.data.len() + r.partition_key.len())
            {
                throttled[i] = Some(shard);
            }
        }
    }
    let to_write: Vec<PutRecord> = parsed
        .into_iter()
        .zip(&throttled)
        .filter(|(_, t)| t.is_none())
        .map(|(r, _)| r)
        .collect();
    let stream = name.clone();
    let mut written = blocking(state, move |s| {
        s.put_many(&stream, to_write)
            .map_err(KinesisError::from_store)
    })
    .await?
    .into_iter();
    let mut failed = 0;
    let internal = || PutRecordsEntry::Failed {
        code: "InternalFailure",
        message: "Internal service failure.".into(),
    };
    let mut records = Vec::with_capacity(throttled.len());
    for t in throttled {
        let entry = match t {
            Some(shard) => {
                failed += 1;
                let e = KinesisError::throughput(&name, &shard);
                PutRecordsEntry::Failed {
                    code: e.kind,
                    message: e.message,
                }
            }
            None => match written.next() {
                Some(Ok(r)) => PutRecordsEntry::Ok {
                    shard_id: r.shard_id,
                    sequence_number: r.sequence_number,
                },
                Some(Err(e)) => {
                    failed += 1;
                    tracing::warn!(stream = %name, "PutRecords record failed: {e}");
                    internal()
                }
                None => {
                    failed += 1;
                    internal()
                }
            },
        };
        records.push(entry);
    }
    Ok(PutRecordsOut { failed, records })
}

async fn get_shard_iterator(state: &ApiState, req: Request<'_>) -> OpResult {
    let name = req.stream_name()?;
    let shard = normalize_shard_id(req.str("ShardId")?);
    let kind = req.str("ShardIteratorType")?;
    let has_sequence = req.opt_str("StartingSequenceNumber")?.is_some();
    if has_sequence && matches!(kind, "TRIM_HORIZON" | "LATEST" | "AT_TIMESTAMP") {
        return Err(KinesisError::invalid_argument(format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and also a StartingSequenceNumber."
        )));
    }
    let start = match kind {
        "TRIM_HORIZON" => StartPosition::TrimHorizon,
        "LATEST" => StartPosition::Latest,
        "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER" => {
            let seq = req.opt_str("StartingSequenceNumber")?.ok_or_else(|| {
                KinesisError::invalid_argument(format!(
                    "Must specify StartingSequenceNumber for {kind} shard iterator type."
                ))
            })?;
            if seq.is_empty() || !seq.chars().all(|c| c.is_ascii_digit()) || (seq.len() > 1 && seq.starts_with('0')) {
                return Err(KinesisError::validation(
                    "startingSequenceNumber",
                    &format!("'{seq}'"),
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
                ));
            }
            if kind == "AT_SEQUENCE_NUMBER" {
                StartPosition::AtSequence(seq.to_string())
            } else {
                StartPosition::AfterSequence(seq.to_string())
            }
        }
        "AT_TIMESTAMP" => {
            let ts = req.opt_timestamp("Timestamp")?.ok_or_else(|| {
                KinesisError::invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                )
            })?;
            let now_ms = state.clock.now_ns() / 1_000_000;
            let ts_ms = ts * 1000.0;
            if ts_ms > now_ms as f64 {
                return Err(KinesisError::invalid_argument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {}, currentTimestampInMillis: {now_ms}",
                    ts_ms as i64
                )));
            }
            // (saturating cast: a timestamp long before 1970 reads from the trim horizon)
            StartPosition::AtTimestamp((ts * 1e9) as i64)
        }
        other => {
            return Err(KinesisError::validation(
                "shardIteratorType",
                &format!("'{other}'"),
                "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, TRIM_HORIZON, AT_SEQUENCE_NUMBER]",
            ))
        }
    };
    let info = describe(state, &name)?;
    if !info.shards.iter().any(|s| s.shard_id == shard) {
        return Err(KinesisError::not_found(format!(
            "Shard {shard} in stream {name} under account {ACCOUNT} does not exist"
        )));
    }
    // AT_TIMESTAMP and sequence numbers search segment files; LATEST waits for a sync in progress.
    let (stream, shard_id) = (name.clone(), shard.clone());
    let position = blocking(state, move |s| {
        s.resolve(&stream, &shard_id, start)
            .map_err(KinesisError::from_store)
    })
    .await?;
    let it = ShardIterator {
        stream: name,
        shard,
        position,
        issued_ms: state.clock.now_ns() / 1_000_000,
        stream_created_ns: info.created_ns,
    };
    Ok(json!({ "ShardIterator": it.encode(&state.iterator_key) }))
}

async fn get_records(state: &ApiState, req: Request<'_>) -> OpResult {
    let raw = req.str("ShardIterator")?;
    let limit = req.opt_i64("Limit")?.unwrap_or(10000);
    check_range("limit", limit, 1, 10000)?;
    let invalid = || KinesisError::invalid_argument("Invalid ShardIterator.");
    let it = ShardIterator::decode(raw, &state.iterator_key).ok_or_else(invalid)?;
    let now_ms = state.clock.now_ns() / 1_000_000;
    let ttl = iterator::ttl_ms();
    match it.age(now_ms, ttl) {
        IteratorAge::Fresh => {}
        IteratorAge::Invalid => return Err(invalid()),
        IteratorAge::Expired => {
            return Err(KinesisError::expired_iterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ttl} milliseconds.",
                it.issued_ms, now_ms
            )))
        }
    }
    let info = describe(state, &it.stream)?;
    if info.created_ns != it.stream_created_ns {
        return Err(KinesisError::stream_not_found(&it.stream));
    }
    if limited(state, &it.stream) && !state.limits.try_read(&it.stream, &it.shard) {
        return Err(KinesisError::throughput(&it.stream, &it.shard));
    }
    let (stream, shard, pos) = (it.stream.clone(), it.shard.clone(), it.position);
    let batch = blocking(state, move |s| {
        s.read(&stream, &shard, pos, limit as usize, MAX_GET_BYTES)
            .map_err(KinesisError::from_store)
    })
    .await?;
    let mut bytes = 0usize;
    let records: Vec<Value> = batch
        .records
        .iter()
        .map(|r| {
            bytes += r.data.len() + r.partition_key.len();
            json!({
                "SequenceNumber": r.sequence_number,
                "ApproximateArrivalTimestamp": epoch_seconds(r.arrival_ns),
                "Data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                "PartitionKey": r.partition_key,
            })
        })
        .collect();
    if limited(state, &it.stream) {
        state.limits.charge_read(&it.stream, &it.shard, bytes);
    }
    let next = ShardIterator {
        position: batch.next,
        issued_ms: now_ms,
        ..it
    };
    Ok(json!({
        "Records": records,
        "NextShardIterator": next.encode(&state.iterator_key),
        "MillisBehindLatest": batch.millis_behind_latest,
    }))
}

async fn change_retention(state: &ApiState, req: Request<'_>, increase: bool) -> OpResult {
    let name = req.stream_name()?;
    let hours = req
        .opt_i64("RetentionPeriodHours")?
        .ok_or_else(|| KinesisError::missing("retentionPeriodHours"))?;
    if hours < 24 {
        return Err(KinesisError::invalid_argument(format!(
            "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > 8760 {
        return Err(KinesisError::invalid_argument(format!(
            "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    let current = describe(state, &name)?.retention_hours as i64;
    if increase && hours < current {
        return Err(KinesisError::invalid_argument(format!(
            "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
        )));
    }
    if !increase && hours > current {
        return Err(KinesisError::invalid_argument(format!(
            "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
        )));
    }
    // Writes and fsyncs the stream's metadata.
    blocking(state, move |s| {
        s.set_retention(&name, hours as u32)
            .map_err(KinesisError::from_store)
    })
    .await?;
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(String, Vec<PutRecord>)>;

    /// (fast path, general path) on one body.
    fn both(body: &str) -> (Parsed, Parsed) {
        let general = serde_json::from_str::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .and_then(|v| parse_put_records(Request(&v)).ok());
        (fast_parse_put_records(body.as_bytes()), general)
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let (fast, general) = both(
            r#"{"StreamName":"s","Records":[{"Data":"QUJD","PartitionKey":"k","ExplicitHashKey":null}]}"#,
        );
        assert!(fast.is_some());
        assert_eq!(fast, general);
        // Escaped strings cannot be borrowed: the general path takes them.
        let (fast, general) =
            both(r#"{"StreamName":"s","Records":[{"Data":"QUJD","PartitionKey":"a\"b"}]}"#);
        assert_eq!(
            (fast, general.map(|g| g.1[0].partition_key.clone())),
            (None, Some("a\"b".into()))
        );
    }

    // Found by fuzzing (fuzz/ target put_records): serde's derived structs accept arrays, so the
    // fast path took bodies the general path (and the service) refuse.
    #[test]
    fn fast_path_refuses_arrays() {
        for body in [
            r#"["s",[["AAAA","k"]]]"#,
            r#"{"StreamName":"s","Records":[["AAAA","k"]]}"#,
        ] {
            assert_eq!(both(body), (None, None), "{body}");
        }
    }

    // Found by fuzzing: serde_json skips an ignored field without checking it, so the fast path
    // took invalid UTF-8 and out-of-range numbers in unknown fields, which the general path
    // refuses.
    #[test]
    fn fast_path_leaves_unknown_fields_to_the_general_path() {
        let mut body =
            br#"{"StreamName":"s","X":"\xd0","Records":[{"Data":"AAEC","PartitionKey":"k"}]}"#
                .to_vec();
        let at = body.windows(4).position(|w| w == b"\\xd0").unwrap();
        body.splice(at..at + 4, [0xd0]);
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        assert_eq!(fast_parse_put_records(&body), None);
        for body in [
            r#"{"StreamName":"s","Records":[{"Data":"AAEC","PartitionKey":"k","X":8e3111112}]}"#,
            r#"{"StreamName":"s","X":1e999,"Records":[{"Data":"AAEC","PartitionKey":"k"}]}"#,
        ] {
            assert_eq!(both(body), (None, None), "{body}");
        }
        // A known field the fast path does not use is fine for both.
        let ok =
            r#"{"StreamName":"s","StreamARN":null,"Records":[{"Data":"AAEC","PartitionKey":"k"}]}"#;
        let (fast, general) = both(ok);
        assert!(general.is_some());
        assert_eq!(fast, None);
    }
}
