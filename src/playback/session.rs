//! HLS / DASH streaming sessions: the signed, expiring session token a player presents instead
//! of credentials, the window of fragments a playlist or manifest lists at a given moment, and
//! media fragments streamed straight from the segment files.
//!
//! Fragments are served unchanged: the recorder writes every fragment's tfdt as its wall-mapped
//! decode time on the 90 kHz clock (src/capture/recorder.rs), so consecutive fragments already
//! line up and a gap in the recording is a gap in the timeline; players need no rebasing
//! (`rewrite_fragment` is only for clips, which start at 0).

use crate::api::kinesis::IteratorKey;
use crate::clock::UnixNanos;
use crate::store::{FragmentMeta, InitMeta, StoreError, StoreReader, TimeOrigin};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Separates session tokens from shard iterators signed with the same key.
const DOMAIN: &[u8] = b"vidgest playback session v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "h")]
    Hls,
    #[serde(rename = "d")]
    Dash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaybackMode {
    #[serde(rename = "l")]
    Live,
    #[serde(rename = "r")]
    LiveReplay,
    #[serde(rename = "o")]
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscontinuityMode {
    #[serde(rename = "a")]
    Always,
    #[serde(rename = "n")]
    Never,
    /// Where the recording has a gap (> 50 ms) or the codec configuration changes: the
    /// fragment's stored discontinuity flag.
    #[serde(rename = "d")]
    OnDiscontinuity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    #[serde(rename = "p")]
    Producer,
    #[serde(rename = "s")]
    Server,
}

impl From<Origin> for TimeOrigin {
    fn from(o: Origin) -> Self {
        match o {
            Origin::Producer => TimeOrigin::Producer,
            Origin::Server => TimeOrigin::Server,
        }
    }
}

/// Everything a session URL grants; signed into its token (short field names keep the
/// per-segment URLs short).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "p")]
    pub protocol: Protocol,
    #[serde(rename = "s")]
    pub stream: String,
    /// The stream's creation time: a session does not survive delete + re-create.
    #[serde(rename = "c")]
    pub stream_created_ns: UnixNanos,
    #[serde(rename = "m")]
    pub mode: PlaybackMode,
    #[serde(rename = "o")]
    pub origin: Origin,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<UnixNanos>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<UnixNanos>,
    #[serde(rename = "d")]
    pub discontinuity: DiscontinuityMode,
    /// EXT-X-PROGRAM-DATE-TIME (HLS) / fragment times (DASH) on every fragment.
    #[serde(rename = "t")]
    pub display_timestamp: bool,
    /// DASH DisplayFragmentNumber: fragment numbers in the manifest.
    #[serde(rename = "f", default)]
    pub display_fragment_number: bool,
    #[serde(rename = "n")]
    pub max_fragments: u32,
    /// Live playlists count discontinuities from here (the first fragment the session saw), so
    /// EXT-X-DISCONTINUITY-SEQUENCE only grows.
    #[serde(rename = "k")]
    pub anchor: u64,
    /// Issue time, Unix ms (LIVE_REPLAY paces from it).
    #[serde(rename = "i")]
    pub issued_ms: i64,
    /// Expiry, Unix ms.
    #[serde(rename = "e")]
    pub expires_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the session token is not valid")]
    Forged,
    #[error("the session token has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no fragments of `{0}` for this session")]
    NoMedia(String),
    /// Not stored (never, or deleted by retention since the playlist listed it).
    #[error("{1} of `{0}` is no longer stored (deleted by retention?)")]
    NoFragment(String, FragmentRef),
    #[error("fragment {1} of `{0}` is not part of this session")]
    NotInSession(String, u64),
    #[error("init segment {1} of `{0}` is not stored")]
    NoInit(String, i64),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl Session {
    /// The token for session URLs (base64url: safe in a query string as is).
    pub fn encode(&self, key: &IteratorKey) -> String {
        let json = serde_json::to_vec(self).expect("session serializes");
        b64().encode(key.sign(DOMAIN, &json))
    }

    /// The session, if `token` was issued under `key`, not altered, and not expired at `now_ms`.
    pub fn decode(token: &str, key: &IteratorKey, now_ms: i64) -> Result<Session, TokenError> {
        let bytes = b64().decode(token).map_err(|_| TokenError::Forged)?;
        let json = key.verify(DOMAIN, &bytes).ok_or(TokenError::Forged)?;
        let s: Session = serde_json::from_slice(json).map_err(|_| TokenError::Forged)?;
        if now_ms > s.expires_ms {
            return Err(TokenError::Expired);
        }
        Ok(s)
    }

    fn time_of(&self, f: &FragmentMeta) -> UnixNanos {
        match self.origin {
            Origin::Producer => f.producer_ns,
            Origin::Server => f.server_ns,
        }
    }

    /// Whether the session may serve `f` (fragments outside a bounded range are refused).
    pub fn covers(&self, f: &FragmentMeta) -> bool {
        let t = self.time_of(f);
        self.start_ns.is_none_or(|s| t >= s) && self.end_ns.is_none_or(|e| t <= e)
    }

    /// The timestamp shown for `f` (EXT-X-PROGRAM-DATE-TIME): the selector's time.
    pub fn display_time(&self, f: &FragmentMeta) -> UnixNanos {
        self.time_of(f)
    }
}

/// What a playlist or manifest lists at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub fragments: Vec<FragmentMeta>,
    /// Discontinuities before the first fragment since the session's anchor (HLS
    /// EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_sequence: u64,
    /// No more fragments will be added (VOD / ENDLIST / static manifest).
    pub ended: bool,
}

impl Window {
    /// Whether a discontinuity is marked before the fragment at `i` (never before the first:
    /// `discontinuity_sequence` counts that one once it has slid out).
    pub fn discontinuity_before(&self, mode: DiscontinuityMode, i: usize) -> bool {
        i > 0
            && match mode {
                DiscontinuityMode::Always => true,
                DiscontinuityMode::Never => false,
                DiscontinuityMode::OnDiscontinuity => self.fragments[i].discontinuity,
            }
    }
}

/// The fragments the session lists at `now_ns`:
/// - ON_DEMAND: the first `max_fragments` in the range; ended.
/// - LIVE: the newest `max_fragments`.
/// - LIVE_REPLAY: a window of `max_fragments` that starts at the range's start and advances in
///   real time from the session's issue time (so playback catches up with live at normal
///   speed); ended once the window holds the range's last fragment and the end has passed.
pub fn plan_window(
    reader: &StoreReader,
    session: &Session,
    now_ns: UnixNanos,
) -> Result<Window, SessionError> {
    let stream = &session.stream;
    let origin: TimeOrigin = session.origin.into();
    let max = session.max_fragments.max(1) as usize;
    let start = session.start_ns.unwrap_or(i64::MIN);
    let end = session.end_ns.unwrap_or(i64::MAX);
    let (fragments, ended) = match session.mode {
        PlaybackMode::OnDemand => (
            reader.fragments_between(stream, origin, start, end, None, max)?,
            true,
        ),
        PlaybackMode::Live => (
            reader.last_fragments_between(stream, origin, i64::MIN, i64::MAX, max)?,
            false,
        ),
        PlaybackMode::LiveReplay => {
            let elapsed = now_ns.saturating_sub(session.issued_ms.saturating_mul(1_000_000));
            let edge = start.saturating_add(elapsed.max(0)).min(end);
            let mut w = reader.last_fragments_between(stream, origin, start, edge, max)?;
            if w.len() < max {
                // the first `max` of the range, so a player has something to buffer at once
                w = reader.fragments_between(stream, origin, start, end, None, max)?;
            }
            let ended = session.end_ns.is_some_and(|e| now_ns >= e)
                && match w.last() {
                    None => true,
                    Some(last) => reader
                        .fragments_between(
                            stream,
                            origin,
                            start,
                            end,
                            Some(last.fragment_number),
                            1,
                        )?
                        .is_empty(),
                };
            (w, ended)
        }
    };
    let Some(first) = fragments.first() else {
        return Err(SessionError::NoMedia(stream.clone()));
    };
    let discontinuity_sequence = match (session.mode, session.discontinuity) {
        (PlaybackMode::OnDemand, _) | (_, DiscontinuityMode::Never) => 0,
        (_, mode) => reader.count_fragments(
            stream,
            session.anchor,
            first.fragment_number,
            mode == DiscontinuityMode::OnDiscontinuity,
        )?,
    };
    Ok(Window {
        fragments,
        discontinuity_sequence,
        ended,
    })
}

/// A session fragment as a response body (`stream::file_body`: no thread is held while the
/// client is slow, bounded memory). The fragment's file is opened before the response
/// starts, so a fragment deleted by retention is a 404, not a broken body.
pub fn open_fragment_body(
    reader: &StoreReader,
    session: &Session,
    which: FragmentRef,
) -> Result<(FragmentBody, u64), SessionError> {
    let stream = &session.stream;
    let found = match which {
        FragmentRef::Number(n) => reader.fragment(stream, n)?,
        FragmentRef::TimeMs(ms) => {
            let t = ms.saturating_mul(1_000_000);
            let origin = session.origin.into();
            reader
                .fragments_between(stream, origin, t, t.saturating_add(999_999), None, 1)?
                .pop()
        }
    };
    let f = found.ok_or_else(|| SessionError::NoFragment(stream.clone(), which))?;
    if !session.covers(&f) {
        return Err(SessionError::NotInSession(
            stream.clone(),
            f.fragment_number,
        ));
    }
    let file = reader.open_fragment(&f)?.into_inner();
    Ok((
        FragmentBody {
            file,
            offset: f.offset,
            size: f.size,
        },
        f.size,
    ))
}

/// How a fragment URL names its fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentRef {
    /// `FragmentNumber=N` (HLS, static DASH).
    Number(u64),
    /// `Time=T`: the fragment starting in that millisecond of the session's timestamp (live
    /// DASH `$Time$`).
    TimeMs(i64),
}

impl std::fmt::Display for FragmentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "fragment {n}"),
            Self::TimeMs(t) => write!(f, "the fragment at {t} ms"),
        }
    }
}

/// An opened fragment, ready to be streamed.
pub struct FragmentBody {
    file: std::fs::File,
    offset: u64,
    size: u64,
}

impl FragmentBody {
    /// The response body: the stored bytes unchanged (`stream::file_body`). Must be called
    /// inside a Tokio runtime.
    pub fn into_body(self) -> axum::body::Body {
        crate::playback::file_body(self.file, self.offset, self.size)
    }
}

/// The init segment of `init_id`, if it is one of the session's stream's.
pub fn session_init(
    reader: &StoreReader,
    session: &Session,
    init_id: i64,
) -> Result<InitMeta, SessionError> {
    reader
        .stream_init(&session.stream, init_id)?
        .ok_or_else(|| SessionError::NoInit(session.stream.clone(), init_id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn session(mode: PlaybackMode) -> Session {
        Session {
            protocol: Protocol::Hls,
            stream: "front door".into(),
            stream_created_ns: 1_764_000_000_000_000_000,
            mode,
            origin: Origin::Producer,
            start_ns: Some(1_764_000_000_000_000_000),
            end_ns: Some(1_764_000_060_000_000_000),
            discontinuity: DiscontinuityMode::OnDiscontinuity,
            display_timestamp: true,
            display_fragment_number: false,
            max_fragments: 1000,
            anchor: 0,
            issued_ms: 1_764_000_000_000,
            expires_ms: 1_764_000_300_000,
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let key = IteratorKey::random();
        let s = session(PlaybackMode::OnDemand);
        let t = s.encode(&key);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Session::decode(&t, &key, s.expires_ms), Ok(s.clone()));
        assert_eq!(
            Session::decode(&t, &key, s.expires_ms + 1),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let key = IteratorKey::random();
        let s = session(PlaybackMode::OnDemand);
        let t = s.encode(&key);
        let now = s.issued_ms;
        // another data directory's key
        assert_eq!(
            Session::decode(&t, &IteratorKey::random(), now),
            Err(TokenError::Forged)
        );
        // any changed byte
        let raw = b64().decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                Session::decode(&b64().encode(bad), &key, now),
                Err(TokenError::Forged),
                "byte {i}"
            );
        }
        // a longer expiry without the key
        let longer = Session {
            expires_ms: i64::MAX,
            ..s.clone()
        };
        let mut forged = serde_json::to_vec(&longer).unwrap();
        forged.extend_from_slice(&raw[raw.len() - 32..]);
        assert_eq!(
            Session::decode(&b64().encode(forged), &key, now),
            Err(TokenError::Forged)
        );
        // a shard iterator signed with the same key is no session token
        let signed_elsewhere = key.sign(b"", &serde_json::to_vec(&s).unwrap());
        assert_eq!(
            Session::decode(&b64().encode(signed_elsewhere), &key, now),
            Err(TokenError::Forged)
        );
        assert_eq!(Session::decode("", &key, now), Err(TokenError::Forged));
        assert_eq!(Session::decode("%%", &key, now), Err(TokenError::Forged));
    }

    /// A store with `n` 2 s fragments from START (producer = server time); those in `gaps`
    /// start a discontinuity.
    fn store_with(n: u64, gaps: &[u64]) -> (tempfile::TempDir, StoreReader) {
        use crate::clock::Clock;
        use crate::store::{NewFragment, Statvfs, Store, StoreOptions, VideoOptions};
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(START);
        let opts = StoreOptions {
            fsync: crate::config::FsyncPolicy::Fragment,
            max_bytes: None,
            min_free: Some(0),
            on_full: crate::config::OnFull::DeleteOldest,
            segment_duration: std::time::Duration::from_secs(60),
        };
        let root = dir.path().join("video");
        let store = Store::open(&root, opts, clock.clone(), std::sync::Arc::new(Statvfs)).unwrap();
        let mut w = store
            .open_video(
                "front door",
                VideoOptions {
                    retention: std::time::Duration::from_secs(3600),
                    max_bytes: None,
                    segment_size: 1 << 20,
                },
            )
            .unwrap();
        let cfg = crate::media::test_support::small_h264_config();
        for i in 1..=n {
            w.append(&NewFragment {
                codec: &cfg,
                producer_ns: clock.now_ns(),
                duration_ns: 2_000_000_000,
                discontinuity: gaps.contains(&i),
                sample_count: 60,
                parts: &[&[i as u8; 100]],
            })
            .unwrap();
            clock.advance(std::time::Duration::from_secs(2));
        }
        let reader = StoreReader::open(&root).unwrap();
        (dir, reader)
    }

    const START: i64 = 1_764_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn numbers(w: &Window) -> Vec<u64> {
        w.fragments.iter().map(|f| f.fragment_number).collect()
    }

    #[test]
    fn live_windows_slide_and_count_the_discontinuities_that_left() {
        let (_dir, r) = store_with(10, &[3, 4, 9]);
        let s = Session {
            start_ns: None,
            end_ns: None,
            max_fragments: 3,
            anchor: 2,
            ..session(PlaybackMode::Live)
        };
        let w = plan_window(&r, &s, START).unwrap();
        assert_eq!(numbers(&w), vec![8, 9, 10]);
        assert!(!w.ended);
        // 3 and 4 are behind the window; 9 is in it and tagged there
        assert_eq!(w.discontinuity_sequence, 2);
        assert!(w.discontinuity_before(DiscontinuityMode::OnDiscontinuity, 1));
        assert!(!w.discontinuity_before(DiscontinuityMode::OnDiscontinuity, 2));
        let always = Session {
            discontinuity: DiscontinuityMode::Always,
            ..s.clone()
        };
        // every fragment after the anchor up to the window's first carried a tag
        assert_eq!(
            plan_window(&r, &always, START)
                .unwrap()
                .discontinuity_sequence,
            6
        );
        let never = Session {
            discontinuity: DiscontinuityMode::Never,
            ..s
        };
        assert_eq!(
            plan_window(&r, &never, START)
                .unwrap()
                .discontinuity_sequence,
            0
        );
    }

    #[test]
    fn live_replay_advances_in_real_time_and_ends_with_its_range() {
        let (_dir, r) = store_with(10, &[]);
        let issued_ms = START / 1_000_000 + 100_000;
        let s = Session {
            start_ns: Some(START + 2 * SEC),
            end_ns: None,
            max_fragments: 3,
            issued_ms,
            ..session(PlaybackMode::LiveReplay)
        };
        let at = |elapsed_s: i64| issued_ms * 1_000_000 + elapsed_s * SEC;
        // at first the range's first fragments, then one more per 2 s of playing
        assert_eq!(numbers(&plan_window(&r, &s, at(0)).unwrap()), vec![2, 3, 4]);
        assert_eq!(numbers(&plan_window(&r, &s, at(4)).unwrap()), vec![2, 3, 4]);
        assert_eq!(numbers(&plan_window(&r, &s, at(6)).unwrap()), vec![3, 4, 5]);
        assert_eq!(
            numbers(&plan_window(&r, &s, at(60)).unwrap()),
            vec![8, 9, 10]
        );
        assert!(!plan_window(&r, &s, at(60)).unwrap().ended);
        // with an end: ENDLIST once the range is played out and its end has passed
        let bounded = Session {
            end_ns: Some(START + 10 * SEC),
            ..s
        };
        let w = plan_window(&r, &bounded, at(6)).unwrap();
        assert_eq!((numbers(&w), w.ended), (vec![3, 4, 5], false));
        let w = plan_window(&r, &bounded, at(60)).unwrap();
        assert_eq!((numbers(&w), w.ended), (vec![4, 5, 6], true));
        // on demand: the first fragments of the range, ended
        let od = Session {
            max_fragments: 1000,
            ..session(PlaybackMode::OnDemand)
        };
        let od = Session {
            start_ns: Some(START + 3 * SEC),
            end_ns: Some(START + 9 * SEC),
            ..od
        };
        let w = plan_window(&r, &od, at(0)).unwrap();
        assert_eq!((numbers(&w), w.ended), (vec![3, 4, 5], true));
        let empty = Session {
            start_ns: Some(START - 100 * SEC),
            end_ns: Some(START - 90 * SEC),
            ..od
        };
        assert!(matches!(
            plan_window(&r, &empty, at(0)),
            Err(SessionError::NoMedia(_))
        ));
    }

    #[test]
    fn sessions_cover_their_range_only() {
        let s = session(PlaybackMode::OnDemand);
        let mut f = crate::playback::hls::tests::frag(1, 1, 0);
        f.producer_ns = s.start_ns.unwrap();
        assert!(s.covers(&f));
        f.producer_ns = s.end_ns.unwrap() + 1;
        assert!(!s.covers(&f));
        let live = Session {
            start_ns: None,
            end_ns: None,
            ..s
        };
        assert!(live.covers(&f));
    }
}
