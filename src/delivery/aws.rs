//! The standard AWS credential and region chain (aws-config) for destinations that do not
//! use the AWS SDK themselves: object_store's S3 client gets its credentials through
//! `ChainCredentials`, so a delivery finds credentials exactly where the AWS CLI would.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::AwsCredential;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

pub struct Chain {
    pub region: String,
    pub credentials: ChainCredentials,
}

/// aws-config's loader over rustls with the ring provider (the SDK's default HTTPS client would
/// build aws-lc-rs with cmake), with the shared-config `profile` and a `region` override: the
/// one place both the S3 credential chain and the Kinesis forwarder start from.
pub(crate) fn sdk_loader(profile: Option<&str>, region: Option<&str>) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(
        aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https(),
    );
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader
}

/// Loads the chain: `profile` selects a shared-config profile, `region` overrides the chain's.
pub async fn load_chain(profile: Option<&str>, region: Option<&str>) -> Chain {
    let loader = sdk_loader(profile, region);
    let sdk = loader.load().await;
    Chain {
        region: sdk
            .region()
            .map_or(super::destination::DEFAULT_REGION.to_string(), |r| {
                r.to_string()
            }),
        credentials: ChainCredentials {
            provider: sdk.credentials_provider(),
            cached: Mutex::new(None),
        },
    }
}

/// object_store's credential provider over the AWS chain, cached until shortly before expiry.
pub struct ChainCredentials {
    provider: Option<SharedCredentialsProvider>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl std::fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCredentials").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
enum ChainError {
    #[error("no AWS credentials: set access_key_id/secret_access_key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or run with an instance role")]
    NoProvider,
    #[error("no AWS credentials found by the chain (environment, profile, web identity, container, instance metadata): {0}")]
    Chain(#[from] aws_credential_types::provider::error::CredentialsError),
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some((c, expiry)) = self.cached.lock().as_ref() {
            let fresh = expiry.is_none_or(|t| SystemTime::now() + REFRESH_BEFORE < t);
            if fresh {
                return Ok(c.clone());
            }
        }
        let generic = |e: ChainError| object_store::Error::Unauthenticated {
            path: String::new(),
            source: Box::new(e),
        };
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| generic(ChainError::NoProvider))?;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| generic(e.into()))?;
        let cred = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *self.cached.lock() = Some((cred.clone(), c.expiry()));
        Ok(cred)
    }
}
