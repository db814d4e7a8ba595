//! HLS playlists of a streaming session (RFC 8216, fragmented MP4 segments, version 7): the
//! master playlist and the media playlist of a `Window`. URLs are relative to the session URL
//! (`/hls/v1/...`) and carry the session token, as the real service's do.

use super::session::{PlaybackMode, Session, Window};
use crate::clock::format_rfc3339;
use crate::store::{FragmentMeta, InitMeta};
use std::fmt::Write;

pub const MASTER_PLAYLIST: &str = "getHLSMasterPlaylist.m3u8";
pub const MEDIA_PLAYLIST: &str = "getHLSMediaPlaylist.m3u8";
pub const INIT_FRAGMENT: &str = "getMP4InitFragment.mp4";
pub const MEDIA_FRAGMENT: &str = "getMP4MediaFragment.mp4";
pub const CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// Peak bit rate of the window's fragments (BANDWIDTH must not be below any segment's rate).
pub fn peak_bandwidth(fragments: &[FragmentMeta]) -> u64 {
    fragments
        .iter()
        .map(|f| f.size * 8 * 1_000_000_000 / f.duration_ns.max(1_000_000) as u64)
        .max()
        .unwrap_or(0)
        .max(1)
}

/// Init segment URL of `init_id` (relative).
pub fn init_url(token: &str, init_id: i64) -> String {
    format!("{INIT_FRAGMENT}?SessionToken={token}&InitId={init_id}")
}

/// Media fragment URL (relative).
pub fn fragment_url(token: &str, number: u64) -> String {
    format!("{MEDIA_FRAGMENT}?SessionToken={token}&FragmentNumber={number}")
}

/// The master playlist: one variant, described by the init segment of the window's first
/// fragment.
pub fn master_playlist(token: &str, init: &InitMeta, window: &Window) -> String {
    format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{}\n\
         {MEDIA_PLAYLIST}?SessionToken={token}\n",
        peak_bandwidth(&window.fragments),
        init.codec_string,
        init.width,
        init.height
    )
}

fn seconds(ns: i64) -> f64 {
    ns.max(0) as f64 / 1e9
}

/// The media playlist of `window`: VOD with ENDLIST for ON_DEMAND, a live playlist otherwise
/// (ENDLIST once a LIVE_REPLAY range has been played out). Each fragment is one segment; an
/// EXT-X-MAP comes first and again wherever the init segment changes.
pub fn media_playlist(session: &Session, token: &str, window: &Window) -> String {
    let frags = &window.fragments;
    let target = frags
        .iter()
        .map(|f| seconds(f.duration_ns).round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(128 + frags.len() * (token.len() + 96));
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        frags.first().map_or(0, |f| f.fragment_number)
    );
    if window.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            window.discontinuity_sequence
        );
    }
    if session.mode == PlaybackMode::OnDemand {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut init = None;
    for (i, f) in frags.iter().enumerate() {
        if window.discontinuity_before(session.discontinuity, i) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init != Some(f.init_id) {
            init = Some(f.init_id);
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_url(token, f.init_id));
        }
        if session.display_timestamp {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_rfc3339(session.display_time(f))
            );
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", seconds(f.duration_ns));
        out.push_str(&fragment_url(token, f.fragment_number));
        out.push('\n');
    }
    if window.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::playback::session::{tests::session, DiscontinuityMode};

    pub(crate) fn frag(n: u64, init_id: i64, discontinuity: u8) -> FragmentMeta {
        FragmentMeta {
            stream: "front door".into(),
            fragment_number: n,
            producer_ns: 1_764_000_000_000_000_000 + n as i64 * 2_000_000_000,
            server_ns: 1_764_000_000_500_000_000 + n as i64 * 2_000_000_000,
            duration_ns: 2_000_000_000,
            size: 250_000,
            init_id,
            discontinuity: discontinuity != 0,
            sample_count: 60,
            segment_id: 1,
            offset: 0,
        }
    }

    fn window(fragments: Vec<FragmentMeta>, ended: bool) -> Window {
        Window {
            fragments,
            discontinuity_sequence: 0,
            ended,
        }
    }

    #[test]
    fn on_demand_is_vod_with_maps_discontinuities_and_dates() {
        let s = session(PlaybackMode::OnDemand);
        let w = window(vec![frag(7, 1, 1), frag(8, 1, 0), frag(9, 2, 1)], true);
        let p = media_playlist(&s, "TOK", &w);
        let expect = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken=TOK&InitId=1\"
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:14.000Z
#EXTINF:2.000,
getMP4MediaFragment.mp4?SessionToken=TOK&FragmentNumber=7
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:16.000Z
#EXTINF:2.000,
getMP4MediaFragment.mp4?SessionToken=TOK&FragmentNumber=8
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken=TOK&InitId=2\"
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:18.000Z
#EXTINF:2.000,
getMP4MediaFragment.mp4?SessionToken=TOK&FragmentNumber=9
#EXT-X-ENDLIST
";
        assert_eq!(p, expect);
    }

    #[test]
    fn discontinuity_modes() {
        let w = window(vec![frag(1, 1, 0), frag(2, 1, 0), frag(3, 1, 1)], true);
        let count = |mode| {
            let s = Session {
                discontinuity: mode,
                ..session(PlaybackMode::OnDemand)
            };
            media_playlist(&s, "T", &w)
                .matches("#EXT-X-DISCONTINUITY\n")
                .count()
        };
        assert_eq!(count(DiscontinuityMode::Always), 2);
        assert_eq!(count(DiscontinuityMode::OnDiscontinuity), 1);
        assert_eq!(count(DiscontinuityMode::Never), 0);
    }

    #[test]
    fn live_has_no_endlist_and_counts_discontinuities() {
        let s = Session {
            display_timestamp: false,
            ..session(PlaybackMode::Live)
        };
        let mut w = window(vec![frag(41, 3, 0), frag(42, 3, 0)], false);
        w.discontinuity_sequence = 4;
        let p = media_playlist(&s, "T", &w);
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:41\n"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:4\n"), "{p}");
        assert!(!p.contains("ENDLIST"), "{p}");
        assert!(!p.contains("PLAYLIST-TYPE"), "{p}");
        assert!(!p.contains("PROGRAM-DATE-TIME"), "{p}");
        assert_eq!(p.matches("#EXT-X-MAP").count(), 1);
    }

    #[test]
    fn master_names_codec_resolution_and_peak_rate() {
        let init = InitMeta {
            id: 1,
            codec: "h264".into(),
            codec_string: "avc1.64001f".into(),
            width: 1280,
            height: 720,
            data: vec![],
        };
        let mut big = frag(2, 1, 0);
        big.size = 1_000_000;
        let w = window(vec![frag(1, 1, 0), big], true);
        let m = master_playlist("T", &init, &w);
        assert_eq!(
            m,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=4000000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720\n\
             getHLSMediaPlaylist.m3u8?SessionToken=T\n"
        );
    }

    #[test]
    fn target_duration_covers_the_longest_fragment() {
        let mut long = frag(2, 1, 0);
        long.duration_ns = 4_600_000_000;
        let w = window(vec![frag(1, 1, 0), long], true);
        let p = media_playlist(&session(PlaybackMode::OnDemand), "T", &w);
        assert!(p.contains("#EXT-X-TARGETDURATION:5\n"), "{p}");
    }
}
