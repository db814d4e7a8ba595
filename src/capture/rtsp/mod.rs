//! RTSP cameras received by retina (`[camera.source] backend = "retina"`): one tokio task per
//! camera on a small dedicated runtime instead of a GStreamer pipeline and a supervisor thread.
//! Frames become the same `RawAu`s GStreamer's parsers produce (convert.rs) and go to the
//! camera's recorder thread as before; the supervision rules are shared (capture/policy.rs).

mod convert;
mod rtcp;
mod task;

use super::{CameraDetect, CameraStatus, CaptureEvent, DetectBranchSpec, Shutdown};
use crate::config::{CameraConfig, RtspTransport, SourceConfig};
use crossbeam_channel::{Receiver, Sender};
use retina::client::{Credentials, Transport};
use std::sync::{Arc, OnceLock};

/// Detection on a retina camera: where its frames go and how they are decoded (an appsrc decode
/// pipeline fed with the received access units, task.rs `DetectSession`).
pub(crate) struct DetectHook {
    pub handle: CameraDetect,
    pub spec: DetectBranchSpec,
}

/// The runtime every retina camera runs on, started with the first one. Not the API's runtime,
/// so that playback load never delays RTSP reads; one worker is plenty for receiving and
/// depacketizing (blocking work, disk I/O, stays on each camera's recorder thread). It lives as
/// long as the process: retina sends TEARDOWN from a task spawned when a session is dropped.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rtsp")
            .enable_all()
            .build()
            .expect("cannot start the RTSP runtime")
    })
}

/// Starts the camera's task. The returned receiver disconnects when the task has ended and
/// dropped `tx` (so the recorder then finishes too).
pub(crate) fn spawn(
    cam: CameraConfig,
    tx: Sender<CaptureEvent>,
    status: Arc<CameraStatus>,
    shutdown: Shutdown,
    detect: Option<DetectHook>,
) -> Receiver<()> {
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    if cam.source.latency.is_some() {
        tracing::info!(camera = %cam.name, "`latency` has no effect with backend = \"retina\" (it has no jitter buffer)");
    }
    runtime().spawn(async move {
        let _done = done_tx;
        task::supervise(cam, status, tx, shutdown, detect).await;
    });
    done
}

/// Where and how to connect, from the camera's source table.
#[derive(Debug)]
struct Target {
    /// Without userinfo (retina refuses URLs with credentials).
    url: url::Url,
    transport: Transport,
    creds: Option<Credentials>,
}

#[derive(Debug, thiserror::Error)]
enum TargetError {
    #[error("no url")]
    NoUrl,
    #[error("invalid url: {0}")]
    Url(#[from] url::ParseError),
}

impl Target {
    fn new(s: &SourceConfig) -> Result<Self, TargetError> {
        let rtspt = s.url.as_ref().is_some_and(|u| u.is_rtspt());
        let mut url = url::Url::parse(&s.url_without_credentials().ok_or(TargetError::NoUrl)?)?;
        if rtspt {
            // rtspt:// only asks for interleaved TCP; retina knows the plain scheme only.
            let _ = url.set_scheme("rtsp");
        }
        // `auto` is TCP: retina's UDP has no reorder buffer and sends no receiver reports.
        let transport = match s.transport() {
            RtspTransport::Udp if !rtspt => Transport::Udp(Default::default()),
            _ => Transport::Tcp(Default::default()),
        };
        let creds = s
            .credentials()
            .map(|(username, password)| Credentials { username, password });
        Ok(Self {
            url,
            transport,
            creds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: &str) -> SourceConfig {
        toml::from_str(&format!("kind = \"rtsp\"\n{extra}")).unwrap()
    }

    #[test]
    fn target_takes_credentials_out_of_the_url() {
        let t = Target::new(&source(
            "url = \"rtsp://ad%40min:p%3Ass@127.0.0.1:8554/cam\"",
        ))
        .unwrap();
        assert_eq!(t.url.as_str(), "rtsp://127.0.0.1:8554/cam");
        assert_eq!(
            t.creds,
            Some(Credentials {
                username: "ad@min".into(),
                password: "p:ss".into()
            })
        );
        assert!(matches!(t.transport, Transport::Tcp(_)));
        let t = Target::new(&source(
            "url = \"rtsp://h/x\"\nusername = \"u\"\npassword = \"p\"",
        ))
        .unwrap();
        assert_eq!(t.creds.unwrap().username, "u");
    }

    #[test]
    fn transports_and_rtspt() {
        let udp = Target::new(&source("url = \"rtsp://h/x\"\ntransport = \"udp\"")).unwrap();
        assert!(matches!(udp.transport, Transport::Udp(_)));
        let auto = Target::new(&source("url = \"rtsp://h/x\"\ntransport = \"auto\"")).unwrap();
        assert!(matches!(auto.transport, Transport::Tcp(_)));
        let t = Target::new(&source("url = \"rtspt://h:554/x\"\ntransport = \"udp\"")).unwrap();
        assert_eq!(t.url.as_str(), "rtsp://h:554/x");
        assert!(matches!(t.transport, Transport::Tcp(_)));
    }
}
