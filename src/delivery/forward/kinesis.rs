//! `kind = "kinesis"`: PutRecords into a remote Kinesis Data Stream, one request in flight.
//!
//! Order per partition key: entries go out in read order; after a response, the failed entries
//! go back to the front of the queue in their order, ahead of every later record, so a later
//! record of a key is only ever sent in the same request as (and after) its earlier ones. What
//! this cannot prevent is the service acknowledging a later entry of a key while failing an
//! earlier one of the same request; the service fails throttled entries suffix-wise per shard,
//! so this does not happen there, and when it does it is counted (`reordered`) and logged.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{sleep_or_shutdown, ForwardError, ForwardStatus, Health, Item, Reader};
use crate::capture::Backoff;
use crate::config::KinesisForward;
use crate::lifecycle::Shutdown;

/// PutRecords limits: records per request and bytes (data + partition key, as the service
/// counts them) per request.
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;

/// How many of the leading entries (sizes in bytes: data + partition key) fit one request;
/// at least one when there is any (a single record is at most 1 MiB).
pub fn plan_batch(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for s in sizes {
        if n == MAX_BATCH_RECORDS || (n > 0 && bytes + s > MAX_BATCH_BYTES) {
            break;
        }
        n += 1;
        bytes += s;
    }
    n
}

/// Acknowledged entries that follow a failed entry of the same partition key in one request
/// (`failed[i]` for `keys[i]`): those were written before an earlier record of their key.
fn count_reordered(keys: &[&str], failed: &[bool]) -> u64 {
    let mut failed_keys = HashSet::new();
    let mut n = 0;
    for (k, f) in keys.iter().zip(failed) {
        if *f {
            failed_keys.insert(*k);
        } else if failed_keys.contains(k) {
            n += 1;
        }
    }
    n
}

async fn client(cfg: &KinesisForward) -> aws_sdk_kinesis::Client {
    let mut loader =
        crate::delivery::aws::sdk_loader(cfg.profile.as_deref(), cfg.region.as_deref())
            // Retries are ours (state, backoff, per-entry retries), not the SDK's.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
    if let Some(e) = &cfg.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            id.expose(),
            secret.expose(),
            cfg.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "vidgest-config",
        ));
    }
    aws_sdk_kinesis::Client::new(&loader.load().await)
}

fn target(cfg: &KinesisForward) -> String {
    match (&cfg.endpoint, &cfg.region) {
        (Some(e), _) => format!("kinesis stream {} at {e}", cfg.stream),
        (None, Some(r)) => format!("kinesis stream {} in {r}", cfg.stream),
        (None, None) => format!("kinesis stream {} (region from the AWS chain)", cfg.stream),
    }
}

/// Whole-call failure: retrying (transient) or failing (needs an operator), with the text.
fn classify<E, R>(e: &SdkError<E, R>, cfg: &KinesisForward) -> (Health, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let at = target(cfg);
    let detail = DisplayErrorContext(e);
    match e {
        SdkError::ServiceError(se) => match se.err().code() {
            Some("ResourceNotFoundException") => (
                Health::Failing,
                format!(
                    "{at}: the remote stream `{}` does not exist: create it there \
                     (aws kinesis create-stream --stream-name {}) or fix stream/region/endpoint \
                     of this [[forward]] ({detail})",
                    cfg.stream, cfg.stream
                ),
            ),
            Some(
                code @ ("AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "MissingAuthenticationToken"
                | "KMSAccessDeniedException"
                | "KMSDisabledException"
                | "KMSNotFoundException"
                | "KMSInvalidStateException"
                | "InvalidArgumentException"
                | "ValidationException"),
            ) => (
                Health::Failing,
                format!("{at}: {code}: check the credentials, their permissions (kinesis:PutRecords) and the stream's KMS key ({detail})"),
            ),
            // Throttling of the whole call, expired credentials, 5xx, ...
            _ => (Health::Retrying, format!("{at}: {detail}")),
        },
        SdkError::ConstructionFailure(_) => (
            Health::Failing,
            format!("{at}: cannot build the request (region or credentials missing? set region, or profile / keys): {detail}"),
        ),
        // Connection refused, timeouts, unparsable responses.
        _ => (Health::Retrying, format!("{at}: {detail}")),
    }
}

pub(super) async fn run(
    cfg: KinesisForward,
    mut reader: Reader,
    status: std::sync::Arc<ForwardStatus>,
    shutdown: Shutdown,
) -> Result<(), ForwardError> {
    status.set_target(target(&cfg));
    let client = client(&cfg).await;
    let mut pending: VecDeque<Item> = VecDeque::new();
    let mut call_backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut failing_backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
    let mut entry_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    tracing::info!(forwarder = %cfg.name, source = %reader.stream(), target = %target(&cfg), "forwarding");
    loop {
        if pending.is_empty() {
            match reader.next(&shutdown).await? {
                Some(item) => pending.push_back(item),
                None => break,
            }
        }
        while pending.len() < 2 * MAX_BATCH_RECORDS {
            match reader.try_next()? {
                Some(item) => pending.push_back(item),
                None => break,
            }
        }
        status.set_in_flight(pending.len());
        let n = plan_batch(
            pending
                .iter()
                .map(|i| i.record.data.len() + i.record.partition_key.len()),
        );
        let entries = pending
            .iter()
            .take(n)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(i.record.data.clone()))
                    .partition_key(&i.record.partition_key)
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let call = client
            .put_records()
            .stream_name(&cfg.stream)
            .set_records(Some(entries))
            .send();
        let result = tokio::select! {
            _ = shutdown.triggered() => break,
            r = call => r,
        };
        let out = match result {
            Ok(out) if out.records().len() == n => out,
            Ok(out) => {
                status.failure(
                    Health::Retrying,
                    format!(
                        "{}: PutRecords answered {} results for {n} records",
                        target(&cfg),
                        out.records().len()
                    ),
                );
                if sleep_or_shutdown(call_backoff.next_delay(), &shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                let (state, msg) = classify(&e, &cfg);
                status.failure(state, msg);
                let delay = match state {
                    Health::Failing => failing_backoff.next_delay(),
                    _ => call_backoff.next_delay(),
                };
                if sleep_or_shutdown(delay, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        call_backoff.reset();
        failing_backoff.reset();
        status.success();
        let sent: Vec<Item> = pending.drain(..n).collect();
        let failed_flags: Vec<bool> = out
            .records()
            .iter()
            .map(|r| r.error_code().is_some())
            .collect();
        let keys: Vec<&str> = sent
            .iter()
            .map(|i| i.record.partition_key.as_str())
            .collect();
        let reordered = count_reordered(&keys, &failed_flags);
        let first_error = out
            .records()
            .iter()
            .find(|r| r.error_code().is_some())
            .map(|r| {
                format!(
                    "{}: {} of {n} records failed, first: {}: {}",
                    target(&cfg),
                    failed_flags.iter().filter(|f| **f).count(),
                    r.error_code().unwrap_or_default(),
                    r.error_message().unwrap_or_default()
                )
            });
        let mut failed = Vec::new();
        let mut acked = 0u64;
        for (item, f) in sent.into_iter().zip(&failed_flags) {
            if *f {
                failed.push(item);
            } else {
                reader.ack(item.id);
                acked += 1;
            }
        }
        // Failed entries first, in their order: no later record of their key overtakes them.
        for item in failed.iter().rev() {
            pending.push_front(item.clone());
        }
        reader.commit()?;
        status.add_forwarded(acked);
        status.set_in_flight(pending.len());
        if reordered > 0 {
            status
                .reordered
                .fetch_add(reordered, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(forwarder = %cfg.name, reordered, "the remote acknowledged records of a partition key after failing an earlier one of that key: their order on the remote differs");
        }
        if let Some(msg) = first_error {
            status
                .retried_entries
                .fetch_add(failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
            status.note_error(msg);
            if sleep_or_shutdown(entry_backoff.next_delay(), &shutdown).await {
                break;
            }
        } else {
            entry_backoff.reset();
        }
    }
    reader.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stop_at_500_records_or_5_mib() {
        assert_eq!(plan_batch(std::iter::repeat_n(10, 1200)), 500);
        assert_eq!(plan_batch([]), 0);
        // 1 MiB records: five fit (exactly 5 MiB), the sixth does not.
        assert_eq!(plan_batch(std::iter::repeat_n(1 << 20, 8)), 5);
        assert_eq!(plan_batch([(1 << 20) + 1; 8]), 4);
    }

    #[test]
    fn acknowledged_entries_after_a_failed_one_of_their_key_are_counted() {
        let keys = ["a", "b", "a", "a", "b", "c"];
        // Suffix-wise failure per key: nothing overtaken.
        assert_eq!(
            count_reordered(&keys, &[false, false, true, true, true, false]),
            0
        );
        // a's second failed, its third succeeded: one record overtook an earlier one.
        assert_eq!(
            count_reordered(&keys, &[false, false, true, false, false, false]),
            1
        );
    }
}
