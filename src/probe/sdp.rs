//! A small SDP (RFC 8866) reader for DESCRIBE answers: only what a probe reports (media lines,
//! rtpmap, fmtp, control, framerate, bandwidth, and the size hints some cameras add).

use super::error::printable;
use super::ProbeError;

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sdp {
    /// Session-level `a=control`.
    pub control: Option<String>,
    pub media: Vec<Media>,
}

/// One `m=` section.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Media {
    /// `video`, `audio`, `application`, ...
    pub kind: String,
    pub proto: String,
    /// Payload types (formats) in the order the camera prefers them.
    pub formats: Vec<u8>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> k=v;k=v`, keys lower-cased.
    pub fmtps: Vec<(u8, Vec<(String, String)>)>,
    pub control: Option<String>,
    pub framerate: Option<f64>,
    /// `b=AS:` in kbit/s.
    pub bandwidth_kbps: Option<u32>,
    /// `a=framesize:<pt> W-H` or `a=x-dimensions:W,H`.
    pub framesize: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

impl Media {
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.payload_type == pt)
    }

    /// Value of one fmtp parameter (name lower case) for `pt`.
    pub fn fmtp(&self, pt: u8, name: &str) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .and_then(|(_, params)| params.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a DESCRIBE body. `content_type` is the response's header, if any.
pub(crate) fn parse(body: &[u8], content_type: Option<&str>) -> Result<Sdp, ProbeError> {
    if let Some(ct) = content_type {
        if !ct
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
        {
            return Err(ProbeError::Sdp(format!(
                "the camera answered DESCRIBE with Content-Type `{ct}`, not application/sdp"
            )));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ProbeError::Sdp(
            "the DESCRIBE answer has no body (no stream description)".into(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ProbeError::Sdp(format!("not UTF-8 text: {}", printable(body))))?;

    let mut sdp = Sdp::default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some(l) if l.starts_with("v=") => {}
        _ => {
            return Err(ProbeError::Sdp(format!(
                "expected `v=0` first, got {}",
                printable(body)
            )))
        }
    }
    for line in lines {
        let Some((kind, value)) = line.split_once('=') else {
            continue; // Tolerate junk lines; cameras are not always strict.
        };
        let value = value.trim();
        match kind {
            "m" => sdp.media.push(parse_media_line(value)?),
            "b" => {
                if let (Some(m), Some(kbps)) = (sdp.media.last_mut(), parse_bandwidth(value)) {
                    m.bandwidth_kbps = Some(kbps);
                }
            }
            "a" => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                match sdp.media.last_mut() {
                    Some(m) => apply_media_attribute(m, name, arg.trim()),
                    None if name == "control" => sdp.control = Some(arg.trim().to_owned()),
                    None => {}
                }
            }
            _ => {}
        }
    }
    Ok(sdp)
}

fn parse_media_line(value: &str) -> Result<Media, ProbeError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() < 4 {
        return Err(ProbeError::Sdp(format!(
            "malformed media line `m={value}` (expected `m=<media> <port> <proto> <format>...`)"
        )));
    }
    Ok(Media {
        kind: fields[0].to_ascii_lowercase(),
        proto: fields[2].to_owned(),
        // Non-numeric formats only occur with non-RTP protocols, which probe does not report.
        formats: fields[3..].iter().filter_map(|f| f.parse().ok()).collect(),
        ..Media::default()
    })
}

fn parse_bandwidth(value: &str) -> Option<u32> {
    let (kind, kbps) = value.split_once(':')?;
    kind.eq_ignore_ascii_case("AS")
        .then(|| kbps.trim().parse().ok())
        .flatten()
}

fn apply_media_attribute(m: &mut Media, name: &str, arg: &str) {
    match name.to_ascii_lowercase().as_str() {
        "rtpmap" => {
            // `<pt> <encoding>/<clock>[/<channels>]`
            let Some((pt, enc)) = arg.split_once(' ') else {
                return;
            };
            let Ok(payload_type) = pt.trim().parse() else {
                return;
            };
            let mut parts = enc.trim().split('/');
            let encoding = parts.next().unwrap_or("").to_owned();
            let Some(Ok(clock_rate)) = parts.next().map(|c| c.trim().parse()) else {
                return;
            };
            let channels = parts.next().and_then(|c| c.trim().parse().ok());
            m.rtpmaps.push(RtpMap {
                payload_type,
                encoding,
                clock_rate,
                channels,
            });
        }
        "fmtp" => {
            let Some((pt, params)) = arg.split_once([' ', '\t']) else {
                return;
            };
            let Ok(pt) = pt.parse() else { return };
            let params = params
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            m.fmtps.push((pt, params));
        }
        "control" => m.control = Some(arg.to_owned()),
        "framerate" => m.framerate = arg.parse().ok().filter(|f: &f64| *f > 0.0),
        "framesize" => {
            // `<pt> W-H`
            let size = arg
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.split_once('-'));
            if let Some((w, h)) = size {
                m.framesize = w.parse().ok().zip(h.parse().ok());
            }
        }
        "x-dimensions" => {
            if let Some((w, h)) = arg.split_once(',') {
                m.framesize = w.trim().parse().ok().zip(h.trim().parse().ok());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like gst-rtsp-server's answer, plus an audio track as IP cameras send.
    const CAMERA_SDP: &str = "v=0\r\n\
o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n\
s=Session streamed with GStreamer\r\n\
i=rtsp-server\r\n\
t=0 0\r\n\
a=tool:GStreamer\r\n\
a=type:broadcast\r\n\
a=control:*\r\n\
a=range:npt=now-\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 0.0.0.0\r\n\
b=AS:4000\r\n\
a=rtpmap:96 H264/90000\r\n\
a=framerate:25\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvjyyLA;profile-level-id=640028\r\n\
a=control:stream=0\r\n\
m=audio 0 RTP/AVP 8 0\r\n\
a=control:trackID=2\r\n";

    #[test]
    fn parses_camera_sdp() {
        let sdp = parse(CAMERA_SDP.as_bytes(), Some("application/sdp")).unwrap();
        assert_eq!(sdp.control.as_deref(), Some("*"));
        assert_eq!(sdp.media.len(), 2);
        let v = &sdp.media[0];
        assert_eq!(v.kind, "video");
        assert_eq!(v.proto, "RTP/AVP");
        assert_eq!(v.formats, vec![96]);
        assert_eq!(
            v.rtpmap(96),
            Some(&RtpMap {
                payload_type: 96,
                encoding: "H264".into(),
                clock_rate: 90000,
                channels: None
            })
        );
        assert_eq!(v.fmtp(96, "packetization-mode"), Some("1"));
        assert_eq!(
            v.fmtp(96, "sprop-parameter-sets"),
            Some("Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvjyyLA")
        );
        assert_eq!(v.control.as_deref(), Some("stream=0"));
        assert_eq!(v.framerate, Some(25.0));
        assert_eq!(v.bandwidth_kbps, Some(4000));
        let a = &sdp.media[1];
        assert_eq!(a.kind, "audio");
        assert_eq!(a.formats, vec![8, 0]);
        assert!(a.rtpmaps.is_empty());
        assert_eq!(a.control.as_deref(), Some("trackID=2"));
    }

    #[test]
    fn size_hints_and_lf_only_lines() {
        let sdp = "v=0\nm=video 0 RTP/AVP 26\na=framesize:26 1280-720\na=framerate:12.5\n\
                   m=video 0 RTP/AVP 97\na=x-dimensions:704,576\n";
        let sdp = parse(sdp.as_bytes(), None).unwrap();
        assert_eq!(sdp.media[0].framesize, Some((1280, 720)));
        assert_eq!(sdp.media[0].framerate, Some(12.5));
        assert_eq!(sdp.media[1].framesize, Some((704, 576)));
    }

    #[test]
    fn rejects_non_sdp() {
        let err = parse(b"<html>nope</html>", None).unwrap_err().to_string();
        assert!(err.contains("v=0") && err.contains("<html>"), "{err}");
        let err = parse(b"v=0\r\n", Some("text/html"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("text/html"), "{err}");
        assert!(parse(b"", None).is_err());
        let err = parse(b"v=0\r\nm=video\r\n", None).unwrap_err().to_string();
        assert!(err.contains("m=video"), "{err}");
    }
}
