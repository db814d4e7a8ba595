"""HLS and DASH streaming sessions driven the way KVS consumer code does it: a `kinesisvideo`
client's get_data_endpoint(APIName=GET_HLS_STREAMING_SESSION_URL / GET_DASH_...), then a
`kinesis-video-archived-media` client on that endpoint for the session URL; the URL is then
played by ffmpeg (no credentials: the session token is in the URL) and checked with ffprobe.

Run by tests/kvs_hls.rs against a daemon recording --stream, with a read token. --expect is JSON
[{n, producer_ns, server_ns, size, duration_ns}, ...]: fragments already stored, oldest first.
--expired-token is a session token signed with the daemon's key but already expired.

Prints "hls: ok <check>" per check and "checks passed" at the end; exits 1 on the first failure.
Runs inside vendor/venv (scripts/bootstrap): standard library plus boto3/botocore.
"""

import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvs_common import UTC, check, data_endpoint, expect_error, fetch, make_client, ok, set_prefix, stream_arguments, when  # noqa: E402

set_prefix("hls")


def media_playlist_url(master_url, master):
    lines = [l for l in master.decode().splitlines() if l and not l.startswith("#")]
    check(len(lines) == 1, f"one variant expected: {master!r}")
    return urllib.parse.urljoin(master_url, lines[0])


def segments(playlist):
    return [l for l in playlist.splitlines() if l and not l.startswith("#")]


def media_sequence(playlist):
    m = re.search(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", playlist, re.M)
    check(m, f"no media sequence: {playlist}")
    return int(m.group(1))


def ffmpeg_plays(url, extra=(), what="", tolerate=None):
    """Plays `url` with ffmpeg (stream copy); returns how many video packets it read. With
    `tolerate` (a regex), ffmpeg runs without -xerror and stderr lines matching it are allowed."""
    strict = [] if tolerate else ["-xerror"]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *strict, *extra, "-i", url, "-c", "copy", "-f", "framecrc", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    errors = [l for l in out.stderr.splitlines() if l.strip() and not (tolerate and re.search(tolerate, l))]
    check(
        out.returncode == 0 and not errors,
        f"ffmpeg {what} failed ({out.returncode}): {out.stderr[-2000:]}",
    )
    return sum(1 for l in out.stdout.splitlines() if l and not l.startswith("#"))


def ffprobe_duration(url):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check(out.returncode == 0 and not out.stderr.strip(), f"ffprobe failed: {out.stderr[-2000:]}")
    info = json.loads(out.stdout)
    return float(info["format"]["duration"]), info["streams"]


def main():
    p = stream_arguments()
    p.add_argument("--expired-token", required=True)
    a = p.parse_args()
    want = json.loads(a.expect)
    check(len(want) >= 4, f"too few fragments: {want}")
    name = a.stream

    kv = make_client("kinesisvideo", a.endpoint, a.reader)
    hls_endpoint = data_endpoint(kv, name, "GET_HLS_STREAMING_SESSION_URL")
    dash_endpoint = data_endpoint(kv, name, "GET_DASH_STREAMING_SESSION_URL")
    check(hls_endpoint == dash_endpoint == a.endpoint, f"endpoints {hls_endpoint} {dash_endpoint}")
    am = make_client("kinesis-video-archived-media", hls_endpoint, a.reader)
    ok("get_data_endpoint")

    # ON_DEMAND over the stored fragments: a VOD playlist of exactly them, played to the end
    sel = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": when(want[0]["producer_ns"]),
            "EndTimestamp": when(want[-1]["producer_ns"], up=True),
        },
    }
    url = am.get_hls_streaming_session_url(
        StreamName=name,
        PlaybackMode="ON_DEMAND",
        HLSFragmentSelector=sel,
        DiscontinuityMode="ON_DISCONTINUITY",
        DisplayFragmentTimestamp="ALWAYS",
    )["HLSStreamingSessionURL"]
    check(url.startswith(a.endpoint + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken="), url)
    status, headers, master = fetch(url)
    check(status == 200, f"master playlist: {status} {master!r}")
    check(headers.get("Content-Type") == "application/vnd.apple.mpegurl", f"{headers}")
    text = master.decode()
    check('CODECS="avc1.' in text and "RESOLUTION=64x48" in text, f"master: {text}")
    media_url = media_playlist_url(url, master)
    status, _, playlist = fetch(media_url)
    playlist = playlist.decode()
    check(status == 200, f"media playlist {status}: {playlist}")
    segs = segments(playlist)
    check(
        [int(urllib.parse.parse_qs(urllib.parse.urlparse(s).query)["FragmentNumber"][0]) for s in segs]
        == [f["n"] for f in want],
        f"segments {segs} != {[f['n'] for f in want]}",
    )
    check(playlist.rstrip().endswith("#EXT-X-ENDLIST"), f"no ENDLIST: {playlist}")
    check("#EXT-X-PLAYLIST-TYPE:VOD" in playlist, playlist)
    check(playlist.count("#EXT-X-PROGRAM-DATE-TIME:") == len(want), playlist)
    check(media_sequence(playlist) == want[0]["n"], playlist)
    # the segments are the stored bytes
    status, _, seg = fetch(urllib.parse.urljoin(media_url, segs[1]))
    check(status == 200 and len(seg) == want[1]["size"], f"segment: {status} {len(seg)}")
    check(seg[4:8] == b"moof", f"segment starts with {seg[:8]!r}")
    ffmpeg_plays(url, what="ON_DEMAND")
    duration, streams = ffprobe_duration(url)
    total = sum(f["duration_ns"] for f in want) / 1e9
    check(abs(duration - total) < 0.25, f"duration {duration} vs {total}")
    check(streams[0]["codec_name"] == "h264" and streams[0]["width"] == 64, f"{streams}")
    ok(f"ON_DEMAND HLS: {len(want)} fragments, ffmpeg plays {duration:.2f}s to the end")

    # LIVE: a sliding window of the newest fragments that follows new ones. Time to first byte:
    # from asking for the session URL to the first media segment's bytes, as a player goes.
    t0 = time.monotonic()
    live = am.get_hls_streaming_session_url(
        StreamName=name, PlaybackMode="LIVE", MaxMediaPlaylistFragmentResults=2
    )["HLSStreamingSessionURL"]
    status, _, master = fetch(live)
    check(status == 200, f"live master {status}")
    live_media = media_playlist_url(live, master)
    first = fetch(live_media)[2].decode()
    status, _, seg = fetch(urllib.parse.urljoin(live_media, segments(first)[-1]))
    ttfb = time.monotonic() - t0
    check(status == 200 and seg[4:8] == b"moof", f"live segment {status}")
    check(len(segments(first)) == 2 and "#EXT-X-ENDLIST" not in first, f"live playlist: {first}")
    check("PLAYLIST-TYPE" not in first, first)
    seq0 = media_sequence(first)
    deadline = time.monotonic() + 30
    while True:
        later = fetch(live_media)[2].decode()
        if media_sequence(later) > seq0:
            break
        check(time.monotonic() < deadline, f"the live playlist does not move: {later}")
        time.sleep(0.2)  # polling the playlist, as a player does
    # 2 fragments of 1 s at 10 fps are 20 frames: more means ffmpeg re-read the playlist
    frames = ffmpeg_plays(live, extra=["-t", "4"], what="LIVE")
    check(frames > 30, f"LIVE: ffmpeg read only {frames} frames")
    ok(f"LIVE HLS: window of 2 moves (sequence {seq0} -> {media_sequence(later)}), ffmpeg follows it ({frames} frames); time to first segment byte {ttfb * 1000:.0f} ms")

    # LIVE_REPLAY from the first stored fragment
    replay = am.get_hls_streaming_session_url(
        StreamName=name,
        PlaybackMode="LIVE_REPLAY",
        HLSFragmentSelector={
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": when(want[0]["producer_ns"])},
        },
        MaxMediaPlaylistFragmentResults=2,
    )["HLSStreamingSessionURL"]
    status, _, master = fetch(replay)
    check(status == 200, f"replay master {status}")
    rp = fetch(media_playlist_url(replay, master))[2].decode()
    check(media_sequence(rp) == want[0]["n"] and len(segments(rp)) == 2, f"replay: {rp}")
    check("#EXT-X-ENDLIST" not in rp, rp)
    frames = ffmpeg_plays(replay, extra=["-t", "4"], what="LIVE_REPLAY")
    check(frames > 30, f"LIVE_REPLAY: ffmpeg read only {frames} frames")
    ok("LIVE_REPLAY HLS starts at StartTimestamp, ffmpeg follows it")

    # DASH ON_DEMAND played to the end by ffmpeg's dash demuxer
    dash = am.get_dash_streaming_session_url(
        StreamName=name,
        PlaybackMode="ON_DEMAND",
        DASHFragmentSelector=sel,
        DisplayFragmentNumber="ALWAYS",
    )["DASHStreamingSessionURL"]
    check(dash.startswith(a.endpoint + "/dash/v1/getDASHManifest.mpd?SessionToken="), dash)
    status, headers, mpd = fetch(dash)
    check(status == 200 and headers.get("Content-Type") == "application/dash+xml", f"{status} {headers}")
    check(mpd.decode().count("<SegmentURL ") == len(want), mpd.decode())
    ffmpeg_plays(dash, what="DASH ON_DEMAND")
    duration, _ = ffprobe_duration(dash)
    check(abs(duration - total) < 0.25, f"DASH duration {duration} vs {total}")
    ok(f"ON_DEMAND DASH: ffmpeg plays {duration:.2f}s to the end")
    live_dash = am.get_dash_streaming_session_url(
        StreamName=name, PlaybackMode="LIVE", MaxManifestFragmentResults=2
    )["DASHStreamingSessionURL"]
    mpd = fetch(live_dash)[2].decode()
    check('type="dynamic"' in mpd and mpd.count("<S t=") == 2, mpd)
    # ffmpeg's dash demuxer finds its place in a refreshed dynamic manifest by wall-clock
    # arithmetic and, on a busy machine, may fetch the segment it just played once more
    # ("Non-monotonous DTS"); the manifest is right (the timeline check above), the client repeats.
    frames = ffmpeg_plays(
        live_dash, extra=["-t", "4"], what="DASH LIVE", tolerate=r"Non-monotonous DTS"
    )
    check(frames > 30, f"DASH LIVE: ffmpeg read only {frames} frames")
    ok(f"LIVE DASH: dynamic MPD, ffmpeg follows it ({frames} frames)")

    # errors
    loose = make_client("kinesis-video-archived-media", hls_endpoint, a.reader, validate=False)
    expect_error(
        "InvalidArgumentException",
        lambda: am.get_hls_streaming_session_url(
            StreamName=name, PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel, ContainerFormat="MPEG_TS"
        ),
        field="ContainerFormat",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: am.get_hls_streaming_session_url(StreamName=name, PlaybackMode="LIVE", HLSFragmentSelector=sel),
        field="TimestampRange",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: am.get_hls_streaming_session_url(StreamName=name, PlaybackMode="ON_DEMAND"),
        field="StartTimestamp",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_hls_streaming_session_url(StreamName=name, Expires=299),
        field="Expires",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_hls_streaming_session_url(StreamName=name, MaxMediaPlaylistFragmentResults=5001),
        field="MaxMediaPlaylistFragmentResults",
    )
    expect_error(
        "InvalidArgumentException",
        lambda: loose.get_hls_streaming_session_url(StreamName=name, Expires="soon"),
        field="Expires",
    )
    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_hls_streaming_session_url(StreamName="no-such-cam", PlaybackMode="LIVE"),
    )
    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_dash_streaming_session_url(StreamName="no-such-cam", PlaybackMode="LIVE"),
    )
    long_ago = {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": datetime.datetime(2001, 1, 1, tzinfo=UTC),
            "EndTimestamp": datetime.datetime(2001, 1, 1, 1, tzinfo=UTC),
        },
    }
    expect_error(
        "ResourceNotFoundException",
        lambda: am.get_hls_streaming_session_url(
            StreamName=name, PlaybackMode="ON_DEMAND", HLSFragmentSelector=long_ago
        ),
    )
    ok("errors (MPEG_TS, LIVE with a range, ON_DEMAND without one, limits, types, unknown stream, no media)")

    # tokens: forged and expired ones are refused with 403, also for segments
    token = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["SessionToken"][0]
    forged = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    base = a.endpoint + "/hls/v1/"
    for path in ("getHLSMasterPlaylist.m3u8", "getHLSMediaPlaylist.m3u8"):
        for t in (forged, a.expired_token, ""):
            status, _, body = fetch(f"{base}{path}?SessionToken={t}")
            check(status == 403, f"{path} with a bad token: {status} {body!r}")
    status, _, _ = fetch(f"{base}getMP4MediaFragment.mp4?SessionToken={forged}&FragmentNumber={want[0]['n']}")
    check(status == 403, f"forged segment: {status}")
    # an HLS token is no DASH token
    status, _, _ = fetch(a.endpoint + f"/dash/v1/getDASHManifest.mpd?SessionToken={token}")
    check(status == 403, f"HLS token on DASH: {status}")
    # a fragment outside the session's range is not served
    status, _, _ = fetch(f"{base}getMP4MediaFragment.mp4?SessionToken={token}&FragmentNumber={want[-1]['n'] + 1000}")
    check(status == 404, f"fragment outside the session: {status}")
    ok("session tokens (forged, expired, missing, wrong protocol -> 403)")

    # the session-URL operations themselves need the API token
    anon = make_client("kinesis-video-archived-media", hls_endpoint, "not-a-token-at-all")
    expect_error("NotAuthorizedException", lambda: anon.get_hls_streaming_session_url(StreamName=name))
    ok("auth")
    print("checks passed", flush=True)


if __name__ == "__main__":
    main()
