//! `vidgest records tail|put`: a Kinesis client of the running daemon (through its HTTP API, so
//! the CLI never touches the daemon's files).

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use vidgest::clock::{format_rfc3339, Clock, SystemClock};
use vidgest::config::{Config, TokenScope};
use vidgest::timespec::parse_time;

/// A minimal Kinesis JSON 1.1 client for the daemon's listener.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(config: &Config) -> Self {
        let token = config
            .api
            .tokens
            .iter()
            .max_by_key(|t| t.scope >= TokenScope::Write)
            .map(|t| t.token.clone())
            .or_else(|| std::env::var("VIDGEST_TOKEN").ok());
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: format!("http://{}/", config.api.listen),
            token,
            agent,
        }
    }

    /// `GET <path>` on the daemon's REST API (`/api/v1/...`), as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path.trim_start_matches('/'));
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().with_context(|| {
            format!(
                "cannot reach the vidgest daemon at {} (is `vidgest run` up?)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!("GET {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub fn call(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .post(&self.base)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", &format!("Kinesis_20131202.{op}"));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .send(serde_json::to_vec(&body)?.as_slice())
            .with_context(|| {
                format!(
                    "cannot reach the vidgest daemon at {} (is `vidgest run` up?)",
                    self.base
                )
            })?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        if !status.is_success() {
            bail!(
                "{op} failed: {}: {}",
                value["__type"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or(&text)
            );
        }
        Ok(value)
    }
}

pub fn put(config: &Config, stream: &str, key: &str, data: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(config);
    let r = client.call(
        "PutRecord",
        json!({
            "StreamName": stream,
            "PartitionKey": key,
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
        }),
    )?;
    println!(
        "{}",
        json!({ "shard_id": r["ShardId"], "sequence_number": r["SequenceNumber"] })
    );
    Ok(ExitCode::SUCCESS)
}

/// `from`: `trim-horizon`, `latest`, or a time (RFC 3339, epoch seconds, `-5m`).
pub fn tail(
    config: &Config,
    stream: &str,
    from: &str,
    shard: Option<&str>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(config);
    let shards: Vec<String> = match shard {
        Some(s) => vec![s.to_string()],
        None => client.call("ListShards", json!({ "StreamName": stream }))?["Shards"]
            .as_array()
            .ok_or_else(|| anyhow!("ListShards returned no shards"))?
            .iter()
            .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
            .collect(),
    };
    let start = match from {
        "trim-horizon" | "TRIM_HORIZON" => json!({ "ShardIteratorType": "TRIM_HORIZON" }),
        "latest" | "LATEST" => json!({ "ShardIteratorType": "LATEST" }),
        t => {
            let ns = parse_time(t, SystemClock.now_ns())?;
            json!({ "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ns as f64 / 1e9 })
        }
    };
    let mut iterators = Vec::new();
    for s in &shards {
        let mut req = start.clone();
        req["StreamName"] = json!(stream);
        req["ShardId"] = json!(s);
        let it = client.call("GetShardIterator", req)?;
        iterators.push((
            s.clone(),
            it["ShardIterator"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let stdout = std::io::stdout();
    loop {
        let mut got = 0;
        let mut behind = 0;
        for (shard, it) in iterators.iter_mut() {
            let r = client.call("GetRecords", json!({ "ShardIterator": it, "Limit": 1000 }))?;
            behind += r["MillisBehindLatest"].as_u64().unwrap_or(0);
            let mut out = stdout.lock();
            for rec in r["Records"].as_array().into_iter().flatten() {
                got += 1;
                writeln!(out, "{}", render(stream, shard, rec))?;
            }
            out.flush()?;
            if let Some(next) = r["NextShardIterator"].as_str() {
                *it = next.to_string();
            }
        }
        if got == 0 && behind == 0 {
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One JSON line per record; JSON payloads stay JSON, text stays text, binary is base64.
fn render(stream: &str, shard: &str, rec: &Value) -> Value {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rec["Data"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let arrival = rec["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0);
    let mut line = json!({
        "stream": stream,
        "shard_id": shard,
        "sequence_number": rec["SequenceNumber"],
        "partition_key": rec["PartitionKey"],
        "arrival": format_rfc3339((arrival * 1e9) as i64),
    });
    match serde_json::from_slice::<Value>(&raw) {
        Ok(v) => line["data"] = v,
        Err(_) => match String::from_utf8(raw.clone()) {
            Ok(s) => line["data"] = json!(s),
            Err(_) => line["data_base64"] = rec["Data"].clone(),
        },
    }
    line
}
