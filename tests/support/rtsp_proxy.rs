//! A fault-injecting RTSP/TCP proxy for the quirk tests (tests/rtsp_quirks.rs), placed between
//! the daemon and `examples/test_camera` on 127.0.0.1.
//!
//! It understands just enough RTSP to misbehave like real cameras do: each direction is parsed
//! into RTSP messages (start line, headers, `Content-Length` body) and RTP/RTCP interleaved
//! frames (`$ channel length payload`, RFC 2326 §10.12). Faults:
//! - SDP edits in DESCRIBE answers ([`SdpEdit`]), with `Content-Length` fixed up;
//! - dropping RTCP (odd interleaved channels) or 1 RTP packet in N (even channels, sequence
//!   numbers left as they are, so the receiver sees a real loss);
//! - at run time, from the test: stall (stop forwarding media, keep the connection open),
//!   resume, and close every proxied connection (a camera dropping its TCP connections).
//!
//! Counters (requests by method, media frames forwarded and dropped) let tests check what
//! happened on the wire. Include with `#[path = "support/rtsp_proxy.rs"] mod rtsp_proxy;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// An edit applied to the SDP body of every DESCRIBE answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpEdit {
    /// Removes `sprop-parameter-sets=...` from `a=fmtp` lines: parameter sets only in-band.
    StripSpropParameterSets,
    /// Replaces the value of `sprop-parameter-sets` with bytes that are not valid base64 SPS/PPS.
    CorruptSpropParameterSets,
    /// Removes every `a=control:` line (session and media level).
    StripControl,
    /// Removes every `a=range:` line.
    StripRange,
    /// Removes every line starting with this prefix (e.g. `a=rtpmap:`).
    StripLinesStartingWith(String),
    /// Sets `sprop-parameter-sets` to this value (e.g. another resolution's SPS/PPS).
    ReplaceSpropParameterSets(String),
}

/// What the proxy breaks. `Default` forwards everything unchanged.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Applied in order to each DESCRIBE answer's SDP.
    pub sdp: Vec<SdpEdit>,
    /// Drops every interleaved frame on an odd channel (RTCP sender reports, by the usual
    /// even/odd channel pairing of RFC 2326 §10.12).
    pub drop_rtcp: bool,
    /// Drops one RTP packet (even channel) in this many, per connection; `None` drops none.
    pub drop_rtp_one_in: Option<u64>,
    /// Rewrites the `timeout=` of every `Session:` answer header to this many seconds, so the
    /// client must send keepalives that often.
    pub session_timeout_s: Option<u32>,
    /// After this many RTP packets of a connection, adds 2^31 to every RTP timestamp (a camera
    /// whose clock jumps).
    pub rtp_timestamp_jump_after: Option<u64>,
    /// Moves the NTP time of every RTCP sender report by this many ms (a camera whose clock is
    /// off ours); 0 leaves them alone.
    pub sr_ntp_shift_ms: i64,
}

/// Counters, shared by all connections of one proxy.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub rtp_forwarded: AtomicU64,
    pub rtp_dropped: AtomicU64,
    pub rtcp_forwarded: AtomicU64,
    pub rtcp_dropped: AtomicU64,
    /// Interleaved frames read from the camera and discarded while stalled.
    pub stalled_frames: AtomicU64,
    pub sdp_edits: AtomicU64,
    requests: Mutex<HashMap<String, u64>>,
}

impl Stats {
    /// How many requests with this method (`"DESCRIBE"`, `"TEARDOWN"`, ...) went upstream.
    pub fn requests(&self, method: &str) -> u64 {
        self.requests
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    fn count_request(&self, method: &str) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default() += 1;
    }
}

struct Shared {
    upstream: SocketAddr,
    faults: Faults,
    stats: Stats,
    stalled: AtomicBool,
    /// Both sockets of every live connection, to close them on request.
    open: Mutex<Vec<TcpStream>>,
}

/// A running proxy; its listener thread and connections live until the test process exits
/// (connections are closed by [`RtspProxy::close_connections`] or when either side hangs up).
pub struct RtspProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RtspProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> io::Result<RtspProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults,
            stats: Stats::default(),
            stalled: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::Builder::new()
            .name("rtsp-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let s = s.clone();
                    let _ =
                        thread::Builder::new()
                            .name("rtsp-proxy-conn".into())
                            .spawn(move || {
                                // A connection that fails to reach the camera is simply closed.
                                let _ = proxy_connection(&s, client);
                            });
                }
            })?;
        Ok(RtspProxy { addr, shared })
    }

    /// `rtsp://127.0.0.1:<port>` followed by `path` (e.g. `/cam0`).
    pub fn url(&self, path: &str) -> String {
        format!("rtsp://{}{path}", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stops forwarding media (interleaved frames are read and discarded, RTSP answers still
    /// pass), like a camera whose encoder froze with its connection open. Also applies to
    /// connections made later.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    /// Closes every proxied connection in both directions, as a camera that drops its clients.
    /// New connections are accepted as before. Returns how many sockets were shut down.
    pub fn close_connections(&self) -> usize {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap());
        for s in &open {
            let _ = s.shutdown(Shutdown::Both);
        }
        open.len()
    }
}

fn proxy_connection(shared: &Arc<Shared>, client: TcpStream) -> io::Result<()> {
    let server = TcpStream::connect(shared.upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
    {
        let mut open = shared.open.lock().unwrap();
        open.push(client.try_clone()?);
        open.push(server.try_clone()?);
    }
    let (c_read, c_write) = (client.try_clone()?, client);
    let (s_read, s_write) = (server.try_clone()?, server);
    let up = {
        let shared = shared.clone();
        thread::spawn(move || pump(&shared, Direction::ToCamera, c_read, s_write))
    };
    let _ = pump(shared, Direction::ToClient, s_read, c_write);
    let _ = up.join();
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Requests (and client RTCP) from the daemon to the camera.
    ToCamera,
    /// Answers and media from the camera to the daemon.
    ToClient,
}

/// Copies messages from `from` to `to`, applying the faults, until either side closes; then
/// shuts both down so the other direction ends too.
fn pump(shared: &Shared, dir: Direction, from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, from.try_clone()?);
    let mut rtp_seen = 0u64;
    let result = (|| -> io::Result<()> {
        loop {
            match read_message(&mut reader)? {
                None => return Ok(()),
                Some(Message::Interleaved { channel, mut frame }) => {
                    if dir == Direction::ToClient {
                        if !forward_media(shared, channel, &mut rtp_seen) {
                            continue;
                        }
                        if channel % 2 == 1 && shared.faults.sr_ntp_shift_ms != 0 {
                            shift_sr_ntp(&mut frame, shared.faults.sr_ntp_shift_ms);
                        }
                        if let Some(after) = shared.faults.rtp_timestamp_jump_after {
                            if channel % 2 == 0 && rtp_seen > after {
                                jump_rtp_timestamp(&mut frame);
                            }
                        }
                    }
                    to.write_all(&frame)?;
                }
                Some(Message::Rtsp { head, body }) => {
                    let (head, body) = match dir {
                        Direction::ToCamera => {
                            if let Some(method) = head.split_whitespace().next() {
                                shared.stats.count_request(method);
                            }
                            (head, body)
                        }
                        Direction::ToClient => edit_answer(shared, head, body),
                    };
                    to.write_all(head.as_bytes())?;
                    to.write_all(&body)?;
                }
            }
        }
    })();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    result
}

/// Whether a camera→client interleaved frame on `channel` passes, counting it either way.
fn forward_media(shared: &Shared, channel: u8, rtp_seen: &mut u64) -> bool {
    let stats = &shared.stats;
    if shared.stalled.load(Ordering::SeqCst) {
        stats.stalled_frames.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if channel % 2 == 1 {
        if shared.faults.drop_rtcp {
            stats.rtcp_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        stats.rtcp_forwarded.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    *rtp_seen += 1;
    if let Some(n) = shared.faults.drop_rtp_one_in {
        if n > 0 && rtp_seen.is_multiple_of(n) {
            stats.rtp_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
    }
    stats.rtp_forwarded.fetch_add(1, Ordering::Relaxed);
    true
}

/// Adds 2^31 to the RTP timestamp of an interleaved frame (`$ ch len` + RTP header).
fn jump_rtp_timestamp(frame: &mut [u8]) {
    if frame.len() >= 4 + 12 {
        let ts = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
        frame[8..12].copy_from_slice(&ts.wrapping_add(1 << 31).to_be_bytes());
    }
}

/// Moves the NTP time of an interleaved RTCP frame (`$ ch len` + compound packet) by `ms`
/// when its first packet is a sender report (packet type 200, NTP at bytes 8..16).
fn shift_sr_ntp(frame: &mut [u8], ms: i64) {
    let Some(pkt) = frame.get_mut(4..) else {
        return;
    };
    if pkt.len() < 16 || pkt[1] != 200 {
        return;
    }
    let ntp = u64::from_be_bytes(pkt[8..16].try_into().unwrap());
    // NTP is 32.32 fixed-point seconds.
    let delta = (i128::from(ms) << 32) / 1000;
    let shifted = (i128::from(ntp) + delta) as u64;
    pkt[8..16].copy_from_slice(&shifted.to_be_bytes());
}

/// `head` with `timeout=N` of its `Session:` header set to `secs` (added when absent).
fn set_session_timeout(head: &str, secs: u32) -> String {
    head.split_inclusive('\n')
        .map(|l| match l.split_once(':') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("session") => {
                let id = v.trim().split(';').next().unwrap_or_default();
                format!("Session: {id};timeout={secs}\r\n")
            }
            _ => l.to_owned(),
        })
        .collect()
}

/// Applies the header and SDP edits to an answer; others pass as is.
fn edit_answer(shared: &Shared, head: String, body: Vec<u8>) -> (String, Vec<u8>) {
    let head = match shared.faults.session_timeout_s {
        Some(secs) => set_session_timeout(&head, secs),
        None => head,
    };
    let is_sdp = header(&head, "content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
    if !is_sdp || shared.faults.sdp.is_empty() {
        return (head, body);
    }
    let Ok(sdp) = String::from_utf8(body.clone()) else {
        return (head, body);
    };
    let edited = edit_sdp(&sdp, &shared.faults.sdp);
    shared.stats.sdp_edits.fetch_add(1, Ordering::Relaxed);
    let head = set_content_length(&head, edited.len());
    (head, edited.into_bytes())
}

/// One unit read from an RTSP/TCP stream.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    /// The whole frame as read (`$`, channel, 2-byte length, payload).
    Interleaved { channel: u8, frame: Vec<u8> },
    /// Start line and headers up to and including the empty line, and the body.
    Rtsp { head: String, body: Vec<u8> },
}

/// Reads the next message, or `None` on a clean EOF between messages.
fn read_message(r: &mut impl BufRead) -> io::Result<Option<Message>> {
    let first = match r.fill_buf()? {
        [] => return Ok(None),
        buf => buf[0],
    };
    if first == b'$' {
        let mut hdr = [0u8; 4];
        r.read_exact(&mut hdr)?;
        let len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        let mut frame = Vec::with_capacity(4 + len);
        frame.extend_from_slice(&hdr);
        frame.resize(4 + len, 0);
        r.read_exact(&mut frame[4..])?;
        return Ok(Some(Message::Interleaved {
            channel: hdr[1],
            frame,
        }));
    }
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside an RTSP header",
            ));
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let len = match header(&head, "content-length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        None => 0,
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(Message::Rtsp { head, body }))
}

/// The value of the first header `name` (case-insensitive) in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `head` with its Content-Length header set to `len`.
fn set_content_length(head: &str, len: usize) -> String {
    head.split_inclusive('\n')
        .map(|l| match l.split_once(':') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("content-length") => {
                format!("Content-Length: {len}\r\n")
            }
            _ => l.to_owned(),
        })
        .collect()
}

/// Applies `edits` to an SDP, keeping its line endings (CRLF per RFC 8866).
fn edit_sdp(sdp: &str, edits: &[SdpEdit]) -> String {
    let mut lines: Vec<String> = sdp.lines().map(str::to_owned).collect();
    for edit in edits {
        match edit {
            SdpEdit::StripControl => lines.retain(|l| !l.starts_with("a=control:")),
            SdpEdit::StripRange => lines.retain(|l| !l.starts_with("a=range:")),
            SdpEdit::StripLinesStartingWith(p) => lines.retain(|l| !l.starts_with(p.as_str())),
            SdpEdit::StripSpropParameterSets => {
                for l in lines.iter_mut().filter(|l| l.starts_with("a=fmtp:")) {
                    *l = edit_fmtp(l, None);
                }
            }
            SdpEdit::CorruptSpropParameterSets => {
                // Valid base64 of bytes that are no SPS/PPS (forbidden_zero_bit set), plus
                // characters outside the alphabet.
                for l in lines.iter_mut().filter(|l| l.starts_with("a=fmtp:")) {
                    *l = edit_fmtp(l, Some("//79/A==,!!notbase64!!"));
                }
            }
            SdpEdit::ReplaceSpropParameterSets(value) => {
                for l in lines.iter_mut().filter(|l| l.starts_with("a=fmtp:")) {
                    *l = edit_fmtp(l, Some(value));
                }
            }
        }
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

/// An `a=fmtp:PT k=v;k=v` line with `sprop-parameter-sets` removed (`None`) or set to `value`.
fn edit_fmtp(line: &str, value: Option<&str>) -> String {
    let Some((pt, params)) = line.split_once(' ') else {
        return line.to_owned();
    };
    let kept: Vec<String> = params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let is_sprop = p
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("sprop-parameter-sets"));
            match (is_sprop, value) {
                (false, _) => Some(p.to_owned()),
                (true, Some(v)) => Some(format!("sprop-parameter-sets={v}")),
                (true, None) => None,
            }
        })
        .collect();
    format!("{pt} {}", kept.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Session\r\nt=0 0\r\na=control:*\r\n\
        a=range:npt=now-\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkA,aM4G4g==;profile-level-id=42C01E\r\n\
        a=control:stream=0\r\n";

    #[test]
    fn strips_sprop_and_keeps_other_fmtp_parameters() {
        let out = edit_sdp(SDP, &[SdpEdit::StripSpropParameterSets]);
        assert!(!out.contains("sprop-parameter-sets"), "{out}");
        assert!(
            out.contains("a=fmtp:96 packetization-mode=1;profile-level-id=42C01E\r\n"),
            "{out}"
        );
        assert!(out.contains("a=control:stream=0\r\n"));
    }

    #[test]
    fn corrupts_sprop() {
        let out = edit_sdp(SDP, &[SdpEdit::CorruptSpropParameterSets]);
        assert!(
            out.contains("sprop-parameter-sets=//79/A==,!!notbase64!!"),
            "{out}"
        );
        assert!(!out.contains("Z0LAHtkA"));
    }

    #[test]
    fn strips_control_range_and_prefixed_lines() {
        let out = edit_sdp(
            SDP,
            &[
                SdpEdit::StripControl,
                SdpEdit::StripRange,
                SdpEdit::StripLinesStartingWith("a=rtpmap:".into()),
            ],
        );
        for gone in ["a=control:", "a=range:", "a=rtpmap:"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.starts_with("v=0\r\n") && out.ends_with("\r\n"));
        assert!(out.contains("m=video 0 RTP/AVP 96\r\n"));
    }

    #[test]
    fn reads_interleaved_frames_and_rtsp_messages_back_to_back() {
        let mut wire = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n".to_vec();
        wire.extend_from_slice(&[b'$', 1, 0, 3, 9, 8, 7]);
        wire.extend_from_slice(b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        let mut r = BufReader::new(Cursor::new(wire));
        match read_message(&mut r).unwrap().unwrap() {
            Message::Rtsp { head, body } => {
                assert!(head.starts_with("RTSP/1.0 200 OK\r\n") && head.ends_with("\r\n\r\n"));
                assert_eq!(header(&head, "content-type"), Some("application/sdp"));
                assert_eq!(body, b"v=0\n");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_message(&mut r).unwrap(),
            Some(Message::Interleaved {
                channel: 1,
                frame: vec![b'$', 1, 0, 3, 9, 8, 7]
            })
        );
        match read_message(&mut r).unwrap().unwrap() {
            Message::Rtsp { head, body } => {
                assert!(head.starts_with("OPTIONS * RTSP/1.0"));
                assert!(body.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read_message(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_message() {
        let mut r = BufReader::new(Cursor::new(vec![b'$', 0, 0, 10, 1, 2]));
        assert!(read_message(&mut r).is_err());
    }

    #[test]
    fn replaces_sprop() {
        let out = edit_sdp(
            SDP,
            &[SdpEdit::ReplaceSpropParameterSets("AAAA,BBBB".into())],
        );
        assert!(
            out.contains("packetization-mode=1;sprop-parameter-sets=AAAA,BBBB;profile"),
            "{out}"
        );
    }

    #[test]
    fn rewrites_the_session_timeout() {
        let head = "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: abc123;timeout=60\r\n\r\n";
        assert_eq!(
            set_session_timeout(head, 4),
            "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: abc123;timeout=4\r\n\r\n"
        );
        let bare = "RTSP/1.0 200 OK\r\nsession: xyz\r\n\r\n";
        assert!(set_session_timeout(bare, 4).contains("Session: xyz;timeout=4\r\n"));
    }

    #[test]
    fn jumps_the_rtp_timestamp_with_wraparound() {
        let mut frame = vec![b'$', 0, 0, 12, 0x80, 96, 0, 1, 0x90, 0, 0, 5, 0, 0, 0, 7];
        jump_rtp_timestamp(&mut frame);
        assert_eq!(frame[8..12], [0x10, 0, 0, 5]);
        assert_eq!(frame[4..8], [0x80, 96, 0, 1], "sequence number untouched");
    }

    #[test]
    fn fixes_content_length_after_an_edit() {
        let head = "RTSP/1.0 200 OK\r\nCSeq: 2\r\ncontent-length: 400\r\n\r\n";
        let out = set_content_length(head, 12);
        assert_eq!(
            out,
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn shifts_the_ntp_time_of_sender_reports_only() {
        let sr = |pt: u8| {
            let mut f = vec![b'$', 1, 0, 28, 0x80, pt, 0, 6, 1, 2, 3, 4];
            f.extend_from_slice(&((1000u64 << 32) | (1 << 31)).to_be_bytes()); // 1000.5 s
            f.extend_from_slice(&[0; 12]);
            f
        };
        let mut f = sr(200);
        shift_sr_ntp(&mut f, -400);
        let ntp = u64::from_be_bytes(f[12..20].try_into().unwrap());
        let secs = ntp as f64 / 2f64.powi(32);
        assert!((secs - 1000.1).abs() < 1e-6, "{secs}");
        let mut f = sr(200);
        shift_sr_ntp(&mut f, 3_600_000);
        let ntp = u64::from_be_bytes(f[12..20].try_into().unwrap());
        assert_eq!(ntp >> 32, 4600);
        // A receiver report is left alone.
        let mut rr = sr(201);
        shift_sr_ntp(&mut rr, -400);
        assert_eq!(rr, sr(201));
    }

    /// The media filter: RTCP on odd channels, 1 RTP packet in N, and the stall switch.
    #[test]
    fn media_filter_drops_what_the_faults_say() {
        let shared = Shared {
            upstream: "127.0.0.1:9".parse().unwrap(),
            faults: Faults {
                drop_rtcp: true,
                drop_rtp_one_in: Some(3),
                ..Faults::default()
            },
            stats: Stats::default(),
            stalled: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        };
        let mut seen = 0;
        let passed: Vec<bool> = [0u8, 1, 0, 0, 0, 3, 0, 0]
            .iter()
            .map(|&ch| forward_media(&shared, ch, &mut seen))
            .collect();
        assert_eq!(passed, [true, false, true, false, true, false, true, false]);
        assert_eq!(shared.stats.rtcp_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.stats.rtp_dropped.load(Ordering::Relaxed), 2);
        shared.stalled.store(true, Ordering::SeqCst);
        assert!(!forward_media(&shared, 0, &mut seen));
        assert_eq!(shared.stats.stalled_frames.load(Ordering::Relaxed), 1);
    }
}
