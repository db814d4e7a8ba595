//! Turning an SDP into [`Track`]s, and a [`ProbeReport`] into text plus a config snippet.

use std::fmt::Write as _;

use base64::Engine as _;

use super::sdp::{Media, Sdp};
use super::{sps, ProbeReport, Track};
use crate::config::rtsp_url::strip_userinfo;

/// One track per `m=` line, described by its first (preferred) payload type.
pub(crate) fn tracks(sdp: &Sdp, content_base: &str) -> Vec<Track> {
    // A session-level absolute control URL replaces the base (RFC 2326 C.1.1).
    let base = match sdp.control.as_deref() {
        Some(c) if c.contains("://") => strip_userinfo(c),
        _ => content_base.to_owned(),
    };
    sdp.media
        .iter()
        .filter_map(|m| {
            let pt = *m.formats.first()?;
            Some(track(m, pt, &base))
        })
        .collect()
}

fn track(m: &Media, pt: u8, base: &str) -> Track {
    let rtpmap = m.rtpmap(pt);
    let codec = codec_name(rtpmap.map(|r| r.encoding.as_str()), pt, m);
    let info = match codec.as_str() {
        "H264" => first_sps(m.fmtp(pt, "sprop-parameter-sets"), sps::h264),
        "H265" => first_sps(m.fmtp(pt, "sprop-sps"), sps::h265),
        _ => None,
    };
    let (width, height) = match (info, m.framesize) {
        (Some(i), _) => (Some(i.width), Some(i.height)),
        (None, Some((w, h))) => (Some(w), Some(h)),
        (None, None) => (None, None),
    };
    Track {
        media: m.kind.clone(),
        codec,
        payload_type: pt,
        clock_rate: rtpmap
            .map(|r| r.clock_rate)
            .or_else(|| static_clock_rate(pt)),
        width,
        height,
        framerate: m.framerate.or(info.and_then(|i| i.fps)),
        control: m.control.as_deref().map(|c| resolve_control(base, c)),
    }
}

/// The first parameter set in a comma-separated base64 list that parses.
fn first_sps(
    list: Option<&str>,
    parse: fn(&[u8]) -> Result<sps::SpsInfo, sps::SpsError>,
) -> Option<sps::SpsInfo> {
    list?.split(',').find_map(|b64| {
        let nal = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        parse(&nal)
            .map_err(|e| tracing::debug!(error = %e, "unreadable SPS in SDP"))
            .ok()
    })
}

fn codec_name(encoding: Option<&str>, pt: u8, m: &Media) -> String {
    let Some(enc) = encoding else {
        // RFC 3551 static payload types, used without rtpmap.
        return match pt {
            0 => "PCMU",
            3 => "GSM",
            8 => "PCMA",
            9 => "G722",
            14 => "MPA",
            26 => "MJPEG",
            32 => "MPV",
            33 => "MP2T",
            34 => "H263",
            _ => "unknown",
        }
        .to_owned();
    };
    match enc.to_ascii_uppercase().as_str() {
        "HEVC" | "H265" => "H265".to_owned(),
        "JPEG" => "MJPEG".to_owned(),
        "MP4A-LATM" => "AAC".to_owned(),
        "MPEG4-GENERIC" => match m.fmtp(pt, "mode") {
            Some(mode) if !mode.to_ascii_lowercase().starts_with("aac") => {
                format!("MPEG4-GENERIC ({mode})")
            }
            _ => "AAC".to_owned(),
        },
        "MP4V-ES" => "MPEG4".to_owned(),
        other => other.to_owned(),
    }
}

fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0..=9 => Some(8000),
        14 | 26 | 31..=34 => Some(90000),
        _ => None,
    }
}

/// `*` means the base itself; relative controls are appended the way cameras (and live555,
/// FFmpeg, GStreamer) expect: `base/control`, not RFC 3986 resolution.
fn resolve_control(base: &str, control: &str) -> String {
    if control == "*" {
        base.to_owned()
    } else if control.contains("://") {
        strip_userinfo(control)
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// The first video track vidgest can record, or else the first video track.
fn main_video(report: &ProbeReport) -> Option<&Track> {
    let video = || report.tracks.iter().filter(|t| t.media == "video");
    video()
        .find(|t| t.codec == "H264" || t.codec == "H265")
        .or_else(|| video().next())
}

pub(crate) fn render(report: &ProbeReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "RTSP camera {}", report.url_redacted);
    if let Some(server) = &report.server {
        let _ = writeln!(s, "  server:  {server}");
    }
    if !report.methods.is_empty() {
        let _ = writeln!(s, "  methods: {}", report.methods.join(", "));
    }
    let auth = match (&report.auth_used, &report.username) {
        (Some(scheme), Some(user)) => format!("{scheme} (user {user})"),
        (Some(scheme), None) => scheme.clone(),
        (None, _) => "none required".to_owned(),
    };
    let _ = writeln!(s, "  auth:    {auth}");
    for (i, t) in report.tracks.iter().enumerate() {
        let _ = writeln!(s, "  track {i}: {}", describe(t));
        if let Some(c) = &t.control {
            let _ = writeln!(s, "           control {c}");
        }
    }
    let _ = writeln!(s, "\nConfig snippet (add to your vidgest TOML file):\n");
    s.push_str(&report.config_snippet());
    s
}

fn describe(t: &Track) -> String {
    let mut d = format!("{} {}", t.media, t.codec);
    if let (Some(w), Some(h)) = (t.width, t.height) {
        let _ = write!(d, " {w}x{h}");
    }
    if let Some(f) = t.framerate {
        let _ = write!(d, " @ {} fps", format_fps(f));
    }
    let _ = write!(d, ", payload type {}", t.payload_type);
    if let Some(c) = t.clock_rate {
        let _ = write!(d, ", clock {c} Hz");
    }
    d
}

fn format_fps(f: f64) -> String {
    if (f - f.round()).abs() < 1e-6 {
        format!("{}", f.round() as i64)
    } else {
        format!("{f:.2}")
    }
}

impl ProbeReport {
    /// A `[[camera]]` table for the config file. Never contains the password: when the camera
    /// needed credentials it holds the user name and a placeholder to fill in.
    pub fn config_snippet(&self) -> String {
        let mut s = String::new();
        if let Some(v) = main_video(self) {
            let _ = writeln!(s, "# {}", describe(v));
            if v.codec != "H264" && v.codec != "H265" {
                let _ = writeln!(
                    s,
                    "# note: vidgest records H.264/H.265; this camera's video is {}: switch its encoder setting",
                    v.codec
                );
            }
        }
        let _ = writeln!(s, "[[camera]]");
        let _ = writeln!(s, "name = {}", toml_str(&camera_name(&self.url_plain)));
        let _ = writeln!(s, "fragment_duration = \"2s\"");
        let _ = writeln!(s, "retention = \"72h\"");
        let _ = writeln!(s, "[camera.source]");
        let _ = writeln!(s, "kind = \"rtsp\"");
        let _ = writeln!(s, "url = {}", toml_str(&self.url_plain));
        let _ = writeln!(s, "transport = \"tcp\"");
        if self.auth_used.is_some() {
            if let Some(user) = &self.username {
                let _ = writeln!(s, "username = {}", toml_str(user));
                let _ = writeln!(
                    s,
                    "password = \"<fill in>\"  # probe never prints passwords: put the camera's password here"
                );
            }
        }
        s
    }
}

/// A config-safe camera name (`[a-z0-9_-]`, at most 64 chars) from the URL's host and path:
/// `rtsp://192.168.1.20/Streaming/Channels/101` -> `192-168-1-20_streaming_channels_101`.
fn camera_name(url: &str) -> String {
    let (host, path) = match rtsp_types::Url::parse(url) {
        Ok(u) => (u.host_str().unwrap_or("").to_owned(), u.path().to_owned()),
        Err(_) => (String::new(), String::new()),
    };
    let clean = |s: &str| {
        let mut out = String::new();
        for c in s.chars().map(|c| c.to_ascii_lowercase()) {
            let c = if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            };
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        out.trim_matches(['-', '_']).to_owned()
    };
    let mut parts = vec![clean(&host)];
    parts.extend(path.split('/').map(clean));
    let mut name = parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    name.truncate(64);
    let name = name.trim_matches(['-', '_']).to_owned();
    if name.is_empty() {
        "camera".to_owned()
    } else {
        name
    }
}

/// A TOML basic string with escapes, via the toml crate so every edge case is right.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::sdp;
    use super::*;

    const SDP: &str = "v=0\r\ns=x\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvjyyLA\r\n\
a=control:stream=0\r\n\
m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=framerate:15\r\n\
a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwBaFcCQ; sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA/oApID5ySZZWaSTK//AAEAAWoMDAwIAAAAwAgAAADA8E=\r\n\
a=control:rtsp://user:pw@10.0.0.9/cam/track2\r\n\
m=audio 0 RTP/AVP 8\r\na=control:trackID=3\r\n";

    #[test]
    fn tracks_from_sdp() {
        let sdp = sdp::parse(SDP.as_bytes(), None).unwrap();
        let t = tracks(&sdp, "rtsp://10.0.0.9/cam/");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].codec, "H264");
        assert_eq!((t[0].width, t[0].height), (Some(1920), Some(1080)));
        assert_eq!(t[0].clock_rate, Some(90000));
        assert_eq!(
            t[0].control.as_deref(),
            Some("rtsp://10.0.0.9/cam/stream=0")
        );
        assert_eq!(t[1].codec, "H265");
        assert_eq!((t[1].width, t[1].height), (Some(322), Some(242)));
        assert_eq!(t[1].framerate, Some(15.0));
        assert_eq!(t[1].control.as_deref(), Some("rtsp://10.0.0.9/cam/track2"));
        assert_eq!(t[2].media, "audio");
        assert_eq!(t[2].codec, "PCMA");
        assert_eq!(t[2].clock_rate, Some(8000));
        assert_eq!(
            t[2].control.as_deref(),
            Some("rtsp://10.0.0.9/cam/trackID=3")
        );
    }

    #[test]
    fn control_resolution() {
        assert_eq!(resolve_control("rtsp://h/cam", "*"), "rtsp://h/cam");
        assert_eq!(resolve_control("rtsp://h/cam", "s=0"), "rtsp://h/cam/s=0");
        assert_eq!(resolve_control("rtsp://h/cam/", "s=0"), "rtsp://h/cam/s=0");
    }

    #[test]
    fn names_are_config_safe() {
        assert_eq!(camera_name("rtsp://127.0.0.1:8554/cam"), "127-0-0-1_cam");
        assert_eq!(
            camera_name("rtsp://Cam.Local/Streaming/Channels/101?x=1"),
            "cam-local_streaming_channels_101"
        );
        assert_eq!(camera_name("rtsp://[::1]/"), "1");
        assert_eq!(camera_name("garbage"), "camera");
        assert!(camera_name(&format!("rtsp://h/{}", "a".repeat(100))).len() <= 64);
    }

    fn report(auth: Option<&str>) -> ProbeReport {
        ProbeReport {
            url_redacted: "rtsp://***:***@10.0.0.9/cam".into(),
            url_plain: "rtsp://10.0.0.9/cam".into(),
            username: auth.map(|_| "ad\"min".into()),
            server: Some("Cam 1.0".into()),
            methods: vec!["OPTIONS".into(), "DESCRIBE".into()],
            tracks: tracks(
                &sdp::parse(SDP.as_bytes(), None).unwrap(),
                "rtsp://10.0.0.9/cam",
            ),
            auth_used: auth.map(str::to_owned),
        }
    }

    #[test]
    fn snippet_is_valid_toml_without_password() {
        let r = report(Some("digest"));
        let text = r.render();
        assert!(text.contains("H264 1920x1080"), "{text}");
        assert!(text.contains("digest (user ad\"min)"), "{text}");
        let v: toml::Value = toml::from_str(&r.config_snippet()).unwrap();
        let cam = &v["camera"][0];
        assert_eq!(cam["name"].as_str(), Some("10-0-0-9_cam"));
        assert_eq!(cam["source"]["kind"].as_str(), Some("rtsp"));
        assert_eq!(cam["source"]["url"].as_str(), Some("rtsp://10.0.0.9/cam"));
        assert_eq!(cam["source"]["transport"].as_str(), Some("tcp"));
        assert_eq!(cam["source"]["username"].as_str(), Some("ad\"min"));
        assert_eq!(cam["source"]["password"].as_str(), Some("<fill in>"));
        assert_eq!(cam["fragment_duration"].as_str(), Some("2s"));

        let v: toml::Value = toml::from_str(&report(None).config_snippet()).unwrap();
        assert!(v["camera"][0]["source"].get("username").is_none());
        assert!(v["camera"][0]["source"].get("password").is_none());
    }
}
