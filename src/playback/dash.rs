//! MPEG-DASH manifests of a streaming session: one Period per init segment run, each a
//! SegmentList of per-fragment URLs (the same fragment URLs as HLS). ON_DEMAND manifests are
//! static; LIVE and LIVE_REPLAY manifests are dynamic and re-fetched by the player.

use super::hls::{fragment_url, init_url, peak_bandwidth, MEDIA_FRAGMENT};
use super::session::{PlaybackMode, Session, Window};
use crate::clock::{format_rfc3339, UnixNanos};
use crate::store::{FragmentMeta, InitMeta};
use std::fmt::Write;

pub const MANIFEST: &str = "getDASHManifest.mpd";
pub const CONTENT_TYPE: &str = "application/dash+xml";

/// An ISO 8601 duration in seconds with millisecond precision.
fn duration(ns: i64) -> String {
    format!("PT{:.3}S", ns.max(0) as f64 / 1e9)
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The manifest of `window`; `init` gives the init segment of an init id (codec and size of a
/// Period). `now_ns` is the publish time of a dynamic manifest.
pub fn manifest(
    session: &Session,
    token: &str,
    window: &Window,
    init: impl Fn(i64) -> Option<InitMeta>,
    now_ns: UnixNanos,
) -> String {
    let frags = &window.fragments;
    let total: i64 = frags.iter().map(|f| f.duration_ns.max(0)).sum();
    let max_dur = frags.iter().map(|f| f.duration_ns).max().unwrap_or(0);
    let dynamic = session.mode != PlaybackMode::OnDemand && !window.ended;
    let mut out = String::with_capacity(512 + frags.len() * (token.len() + 96));
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:kvs=\"urn:vidgest:kvs\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"",
    );
    if dynamic {
        // Epoch-based timing: availabilityStartTime is the epoch and each Period starts at its
        // first fragment's timestamp, so times stay put as the window slides. A player re-reads
        // the manifest at least every fragment duration.
        let _ = write!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
             minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" \
             suggestedPresentationDelay=\"{}\"",
            format_rfc3339(0),
            format_rfc3339(now_ns),
            duration(max_dur),
            duration(total),
            duration(max_dur * 3),
        );
    } else {
        let _ = write!(
            out,
            " type=\"static\" mediaPresentationDuration=\"{}\"",
            duration(total)
        );
    }
    let _ = writeln!(out, " minBufferTime=\"{}\">", duration(max_dur));
    let mut offset = 0i64;
    for run in frags.chunk_by(|a, b| a.init_id == b.init_id) {
        period(
            &mut out,
            session,
            token,
            run,
            offset,
            init(run[0].init_id),
            dynamic,
        );
        offset += run.iter().map(|f| f.duration_ns.max(0)).sum::<i64>();
    }
    out.push_str("</MPD>\n");
    out
}

fn period(
    out: &mut String,
    session: &Session,
    token: &str,
    run: &[FragmentMeta],
    offset: i64,
    init: Option<InitMeta>,
    dynamic: bool,
) {
    let first = &run[0];
    let avg_ms =
        run.iter().map(|f| f.duration_ns.max(0)).sum::<i64>() / 1_000_000 / run.len() as i64;
    if dynamic {
        let start_ms = session.display_time(first).div_euclid(1_000_000);
        let _ = writeln!(
            out,
            "  <Period id=\"{}-{start_ms}\" start=\"{}\">",
            first.init_id,
            duration(start_ms * 1_000_000)
        );
    } else {
        let _ = writeln!(
            out,
            "  <Period id=\"{}\" start=\"{}\">",
            first.fragment_number,
            duration(offset)
        );
    }
    out.push_str(
        "    <AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
    );
    let (codecs, w, h) = init.as_ref().map_or((String::new(), 0, 0), |i| {
        (i.codec_string.clone(), i.width, i.height)
    });
    let _ = writeln!(
        out,
        "      <Representation id=\"{}\" codecs=\"{}\" width=\"{w}\" height=\"{h}\" bandwidth=\"{}\">",
        first.init_id,
        xml_attr(&codecs),
        peak_bandwidth(run)
    );
    if dynamic {
        segment_timeline(out, session, token, run);
        return;
    }
    let _ = writeln!(
        out,
        "        <SegmentList timescale=\"1000\" duration=\"{}\" startNumber=\"{}\">",
        avg_ms.max(1),
        first.fragment_number
    );
    let _ = writeln!(
        out,
        "          <Initialization sourceURL=\"{}\"/>",
        xml_attr(&init_url(token, first.init_id))
    );
    for f in run {
        let _ = write!(
            out,
            "          <SegmentURL media=\"{}\"",
            xml_attr(&fragment_url(token, f.fragment_number))
        );
        if session.display_fragment_number {
            let _ = write!(out, " kvs:fn=\"{}\"", f.fragment_number);
        }
        if session.display_timestamp {
            let _ = write!(out, " kvs:ts=\"{}\"", session.display_time(f) / 1_000_000);
        }
        out.push_str("/>\n");
    }
    out.push_str(
        "        </SegmentList>\n      </Representation>\n    </AdaptationSet>\n  </Period>\n",
    );
}

/// A live Period's segments: a SegmentTemplate addressing fragments by their start time
/// (`$Time$`, epoch ms of the session's timestamp) with a SegmentTimeline, so a player re-reading
/// the manifest finds its place by time as the window slides (ffmpeg's DASH demuxer follows
/// a sliding SegmentList by index and loses its place).
fn segment_timeline(out: &mut String, session: &Session, token: &str, run: &[FragmentMeta]) {
    let _ = writeln!(
        out,
        "        <SegmentTemplate timescale=\"1000\" presentationTimeOffset=\"{}\" \
         initialization=\"{}\" media=\"{}\">",
        session.display_time(&run[0]).div_euclid(1_000_000),
        xml_attr(&init_url(token, run[0].init_id)),
        xml_attr(&format!(
            "{MEDIA_FRAGMENT}?SessionToken={token}&Time=$Time$"
        ))
    );
    out.push_str("          <SegmentTimeline>\n");
    for f in run {
        let _ = writeln!(
            out,
            "            <S t=\"{}\" d=\"{}\"/>",
            session.display_time(f).div_euclid(1_000_000),
            (f.duration_ns.max(0) / 1_000_000).max(1)
        );
    }
    out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n    </AdaptationSet>\n  </Period>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::hls::tests::frag;
    use crate::playback::session::tests::session;

    fn init(id: i64) -> Option<InitMeta> {
        Some(InitMeta {
            id,
            codec: "h264".into(),
            codec_string: "avc1.42c01e".into(),
            width: 64,
            height: 48,
            data: vec![],
        })
    }

    #[test]
    fn on_demand_is_static_with_a_period_per_init() {
        let s = session(PlaybackMode::OnDemand);
        let w = Window {
            fragments: vec![frag(1, 1, 0), frag(2, 1, 0), frag(3, 2, 1)],
            discontinuity_sequence: 0,
            ended: true,
        };
        let m = manifest(&s, "T", &w, init, 0);
        assert!(
            m.contains("type=\"static\" mediaPresentationDuration=\"PT6.000S\""),
            "{m}"
        );
        assert_eq!(m.matches("<Period ").count(), 2, "{m}");
        assert!(m.contains("<Period id=\"3\" start=\"PT4.000S\">"), "{m}");
        assert!(
            m.contains("<SegmentURL media=\"getMP4MediaFragment.mp4?SessionToken=T&amp;FragmentNumber=2\" kvs:ts=\"1764000004000\"/>"),
            "{m}"
        );
        assert!(
            m.contains("<Initialization sourceURL=\"getMP4InitFragment.mp4?SessionToken=T&amp;InitId=2\"/>"),
            "{m}"
        );
        assert!(
            m.contains("codecs=\"avc1.42c01e\" width=\"64\" height=\"48\""),
            "{m}"
        );
        assert!(!m.contains("dynamic"));
    }

    #[test]
    fn live_is_dynamic() {
        let s = Session {
            display_timestamp: false,
            ..session(PlaybackMode::Live)
        };
        let w = Window {
            fragments: vec![frag(5, 1, 0), frag(6, 1, 0)],
            discontinuity_sequence: 0,
            ended: false,
        };
        let m = manifest(&s, "T", &w, init, 1_764_000_100_000_000_000);
        assert!(m.contains("type=\"dynamic\""), "{m}");
        assert!(m.contains("minimumUpdatePeriod=\"PT2.000S\""), "{m}");
        assert!(m.contains("&amp;Time=$Time$\""), "{m}");
        assert!(m.contains("<S t=\"1764000010000\" d=\"2000\"/>"), "{m}");
        assert!(!m.contains("SegmentList"), "{m}");
        assert!(!m.contains("kvs:ts"), "{m}");
    }
}
