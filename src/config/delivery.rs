//! `[[delivery]]` (Firehose-style delivery streams) and `[[forward]]` (remote Kinesis, MQTT):
//! schema and checks. What they do: docs/delivery.md.

use super::{ByteSize, HumanDuration};
use crate::delivery::Compression;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A string from the config that must never be shown (keys, passwords): `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Secret(#[serde(deserialize_with = "super::rtsp_url::secret::string")] String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

pub const MIN_BUFFER_SIZE: u64 = 1 << 20;
pub const MAX_BUFFER_SIZE: u64 = 128 << 20;
pub const MIN_BUFFER_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_BUFFER_INTERVAL: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    #[default]
    Jsonl,
    Parquet,
}

/// `[[delivery]]`: records of one shard stream into batched objects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub name: String,
    /// The shard stream read (a `[[stream]]` or a camera's detection stream).
    pub source: String,
    #[serde(default)]
    pub format: DeliveryFormat,
    /// jsonl: the whole object (default none, as Firehose); parquet: its columns (default snappy).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Uncompressed bytes that flush a buffer (Firehose's SizeInMBs).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: ByteSize,
    /// Age that flushes a buffer (Firehose's IntervalInSeconds).
    #[serde(default = "default_buffer_interval")]
    pub buffer_interval: HumanDuration,
    /// Object key prefix with Firehose expressions (default `<name>/yyyy/MM/dd/HH/`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Prefix of error objects (default `<name>-errors/!{firehose:error-output-type}/yyyy/MM/dd/HH/`).
    #[serde(default)]
    pub error_prefix: Option<String>,
    /// Parquet only: the built-in schema's name (`detections`) or declared columns.
    #[serde(default)]
    pub schema: Option<SchemaConfig>,
    /// Default: the directory `outbox` below the data dir.
    #[serde(default)]
    pub destination: DestinationConfig,
}

impl DeliveryConfig {
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or(match self.format {
            DeliveryFormat::Jsonl => Compression::None,
            DeliveryFormat::Parquet => Compression::Snappy,
        })
    }

    /// The prefix of error objects when none is configured.
    pub fn default_error_prefix(&self) -> String {
        format!(
            "{}-errors/!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd/HH}}/",
            self.name
        )
    }
}

fn default_buffer_size() -> ByteSize {
    ByteSize(5 << 20)
}
fn default_buffer_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// `schema = "detections"` or `[delivery.schema]` with `[[delivery.schema.column]]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaConfig {
    Builtin(String),
    Declared(DeclaredSchema),
}

/// By hand rather than `#[serde(untagged)]`, whose errors drop the key at fault.
impl<'de> Deserialize<'de> for SchemaConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SchemaConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a built-in schema name or a table of columns")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SchemaConfig, E> {
                Ok(SchemaConfig::Builtin(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<SchemaConfig, A::Error> {
                DeclaredSchema::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(SchemaConfig::Declared)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSchema {
    /// Dotted path of an array in the record: one row per element (paths then start at the
    /// element; `$.` reaches the record). Absent: one row per record.
    #[serde(default)]
    pub rows: Option<String>,
    #[serde(rename = "column")]
    pub columns: Vec<ColumnConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Dotted JSON path of the value (default: the column name).
    #[serde(default)]
    pub path: Option<String>,
    /// A record without the value fails conversion (goes to the error prefix) unless the
    /// column is optional (then NULL).
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Boolean,
    Int,
    Bigint,
    Float,
    Double,
    /// UTC, milliseconds: from an RFC 3339 string or a number of Unix milliseconds.
    Timestamp,
}

impl ColumnType {
    /// The config's name, which is also the Hive/Athena type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Boolean => "boolean",
            ColumnType::Int => "int",
            ColumnType::Bigint => "bigint",
            ColumnType::Float => "float",
            ColumnType::Double => "double",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

/// Where a delivery's objects go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DestinationConfig {
    Dir(DirDestination),
    S3(Box<S3Destination>),
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig::Dir(DirDestination {
            path: PathBuf::from("outbox"),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirDestination {
    /// Relative paths are below `agent.data_dir` (see `DirDestination::resolve`).
    pub path: PathBuf,
}

impl DirDestination {
    pub fn resolve(&self, data_dir: &std::path::Path) -> PathBuf {
        data_dir.join(&self.path)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Destination {
    pub bucket: String,
    #[serde(default)]
    pub region: Option<String>,
    /// S3-compatible or private endpoint (`http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers need.
    #[serde(default)]
    pub path_style: bool,
    /// Server-side encryption: `AES256` or `aws:kms` (with `kms_key_id`).
    #[serde(default)]
    pub sse: Option<String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Static credentials (else the standard AWS chain: environment, profile, instance role).
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Shared-config profile for the credential chain.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `[[forward]]`: records of one shard stream to a remote system as they arrive.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ForwardConfig {
    Kinesis(KinesisForward),
    Mqtt(MqttForward),
}

impl ForwardConfig {
    pub fn name(&self) -> &str {
        match self {
            ForwardConfig::Kinesis(k) => &k.name,
            ForwardConfig::Mqtt(m) => &m.name,
        }
    }
    pub fn source(&self) -> &str {
        match self {
            ForwardConfig::Kinesis(k) => &k.source,
            ForwardConfig::Mqtt(m) => &m.source,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisForward {
    pub name: String,
    pub source: String,
    /// The remote stream's name.
    pub stream: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttForward {
    pub name: String,
    pub source: String,
    /// `mqtt://host:1883` (or `mqtts://host:8883`).
    pub url: String,
    /// Topics are `<topic_prefix>/<stream>/<partition key>`; availability at
    /// `<topic_prefix>/availability`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Default `vidgest-<device>-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: HumanDuration,
}

fn default_topic_prefix() -> String {
    "vidgest".into()
}
fn default_keep_alive() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// Checks serde cannot express; `streams` are the names a source may use.
pub(super) fn validate(
    deliveries: &[DeliveryConfig],
    forwards: &[ForwardConfig],
    streams: &std::collections::BTreeSet<String>,
    add: &mut dyn FnMut(String, String),
) {
    use crate::delivery::{Prefix, PrefixKind};
    let mut names = std::collections::HashSet::new();
    let mut check_common = |at: &dyn Fn(&str) -> String,
                            name: &str,
                            source: &str,
                            add: &mut dyn FnMut(String, String)| {
        if !super::validate::is_name(name) {
            add(
                at("name"),
                format!("`{name}` may only contain letters, digits, `-`, `_` and `.` (1..64 characters)"),
            );
        } else if !names.insert(name.to_string()) {
            add(
                at("name"),
                format!("duplicate name `{name}` (deliveries and forwarders share names: each has its own consumer)"),
            );
        }
        if !streams.contains(source) {
            let known: Vec<&str> = streams.iter().map(String::as_str).collect();
            add(
                at("source"),
                format!(
                    "unknown stream `{source}`: declare it as a [[stream]] or use a camera's detection stream (known: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
        }
    };
    for (i, d) in deliveries.iter().enumerate() {
        let at = |field: &str| format!("delivery[{i}].{field}");
        check_common(&at, &d.name, &d.source, add);
        if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&d.buffer_size.0) {
            add(
                at("buffer_size"),
                format!("{} is out of range: 1MiB ..= 128MiB", d.buffer_size),
            );
        }
        if !(MIN_BUFFER_INTERVAL..=MAX_BUFFER_INTERVAL).contains(&d.buffer_interval.0) {
            add(
                at("buffer_interval"),
                format!("{} is out of range: 1s ..= 900s", d.buffer_interval),
            );
        }
        if let Err(e) = Prefix::parse(d.prefix.as_deref(), &d.name, PrefixKind::Data) {
            add(at("prefix"), e.to_string());
        }
        let error_prefix = d
            .error_prefix
            .clone()
            .unwrap_or_else(|| d.default_error_prefix());
        match Prefix::parse(Some(&error_prefix), &d.name, PrefixKind::Error) {
            Ok(p) if p.is_dynamic() => add(
                at("error_prefix"),
                "must not use partitionKeyFromQuery (records that fail have no usable fields)"
                    .into(),
            ),
            Ok(_) => {}
            Err(e) => add(at("error_prefix"), e.to_string()),
        }
        match (&d.format, &d.schema) {
            (DeliveryFormat::Jsonl, Some(_)) => add(
                at("schema"),
                "only parquet deliveries have a schema (jsonl writes each record as it is)".into(),
            ),
            (DeliveryFormat::Parquet, Some(SchemaConfig::Builtin(name)))
                if !BUILTIN_SCHEMAS.contains(&name.as_str()) =>
            {
                add(
                    at("schema"),
                    format!(
                        "unknown built-in schema `{name}` (built in: {}); or declare columns in [delivery.schema]",
                        BUILTIN_SCHEMAS.join(", ")
                    ),
                )
            }
            (DeliveryFormat::Parquet, Some(SchemaConfig::Declared(s))) => {
                if s.columns.is_empty() {
                    add(at("schema.column"), "declare at least one column".into());
                }
                let mut cols = std::collections::HashSet::new();
                for (j, c) in s.columns.iter().enumerate() {
                    if c.name.is_empty() || !cols.insert(c.name.as_str()) {
                        add(
                            at(&format!("schema.column[{j}].name")),
                            format!("`{}` is empty or a duplicate", c.name),
                        );
                    }
                }
            }
            _ => {}
        }
        if d.format == DeliveryFormat::Parquet {
            if let Err(e) =
                crate::delivery::parquet::Parquet::new(d.schema.as_ref(), d.compression())
            {
                add(at("schema"), e.to_string());
            }
        }
        match &d.destination {
            DestinationConfig::Dir(dir) => {
                if dir
                    .path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                    || dir.path.as_os_str().is_empty()
                {
                    add(
                        at("destination.path"),
                        format!(
                            "`{}`: give an absolute path or one below agent.data_dir without `..`",
                            dir.path.display()
                        ),
                    );
                }
            }
            DestinationConfig::S3(s3) => {
                if !(3..=63).contains(&s3.bucket.len())
                    || !s3.bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                {
                    add(
                        at("destination.bucket"),
                        format!(
                            "`{}` is not an S3 bucket name (3..63 lower-case letters, digits, `-`, `.`)",
                            s3.bucket
                        ),
                    );
                }
                match s3.sse.as_deref() {
                    None if s3.kms_key_id.is_some() => add(
                        at("destination.kms_key_id"),
                        "needs sse = \"aws:kms\"".into(),
                    ),
                    None | Some("AES256") | Some("aws:kms") => {}
                    Some(other) => add(
                        at("destination.sse"),
                        format!("`{other}`: use \"AES256\" or \"aws:kms\""),
                    ),
                }
                if s3.sse.as_deref() == Some("AES256") && s3.kms_key_id.is_some() {
                    add(
                        at("destination.kms_key_id"),
                        "only with sse = \"aws:kms\"".into(),
                    );
                }
                check_endpoint(&at("destination.endpoint"), s3.endpoint.as_deref(), add);
                check_key_pair(
                    &at("destination"),
                    &s3.access_key_id,
                    &s3.secret_access_key,
                    add,
                );
            }
        }
    }
    for (i, f) in forwards.iter().enumerate() {
        let at = |field: &str| format!("forward[{i}].{field}");
        check_common(&at, f.name(), f.source(), add);
        match f {
            ForwardConfig::Kinesis(k) => {
                if super::validate::check_stream_name(&k.stream).is_err() {
                    add(
                        at("stream"),
                        format!("`{}` is not a Kinesis stream name", k.stream),
                    );
                }
                check_endpoint(&at("endpoint"), k.endpoint.as_deref(), add);
                check_key_pair(&at(""), &k.access_key_id, &k.secret_access_key, add);
            }
            ForwardConfig::Mqtt(m) => {
                match url::Url::parse(&m.url) {
                    Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") && u.host_str().is_some() => {
                        if !u.username().is_empty() || u.password().is_some() {
                            add(
                                at("url"),
                                "put credentials in username/password, not in the URL".into(),
                            );
                        }
                    }
                    _ => add(
                        at("url"),
                        "must be mqtt://host[:port] or mqtts://host[:port]".into(),
                    ),
                }
                if m.topic_prefix.is_empty()
                    || m.topic_prefix.contains(['#', '+'])
                    || m.topic_prefix.ends_with('/')
                {
                    add(
                        at("topic_prefix"),
                        format!(
                            "`{}`: must be non-empty, without wildcards (# +) or a trailing `/`",
                            m.topic_prefix
                        ),
                    );
                }
            }
        }
    }
}

/// Built-in Parquet schemas (`schema = "..."`).
pub const BUILTIN_SCHEMAS: &[&str] = &["detections"];

fn check_endpoint(at: &str, endpoint: Option<&str>, add: &mut dyn FnMut(String, String)) {
    if let Some(e) = endpoint {
        match url::Url::parse(e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => add(
                at.to_string(),
                format!("`{e}` is not an http(s) URL like http://127.0.0.1:9000"),
            ),
        }
    }
}

fn check_key_pair(
    at: &str,
    id: &Option<Secret>,
    secret: &Option<Secret>,
    add: &mut dyn FnMut(String, String),
) {
    let at = at.trim_end_matches('.');
    match (id, secret) {
        (Some(_), None) => add(
            format!("{at}.secret_access_key"),
            "missing: access_key_id needs it".into(),
        ),
        (None, Some(_)) => add(
            format!("{at}.access_key_id"),
            "missing: secret_access_key needs it".into(),
        ),
        _ => {}
    }
}
