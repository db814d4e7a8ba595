#!/usr/bin/env python3
"""Writes the hand-made seed corpus: fuzz/corpus/<target>/seed-*. Needs ffmpeg (libx264, libx265)
for real SPS NAL units and fMP4 fragments. Rerun after changing it; the files are committed."""

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def nal_units(annexb):
    """NAL units of an Annex B byte stream, without start codes."""
    out, i = [], 0
    starts = []
    while True:
        j = annexb.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(annexb)
        out.append(annexb[s:e].rstrip(b"\x00"))
    return out


def boxes(b):
    i = 0
    while i + 8 <= len(b):
        size, kind = struct.unpack(">I4s", b[i : i + 8])
        yield kind, b[i : i + size]
        i += size


def sdp_seeds():
    h264 = (
        "v=0\r\no=- 1 1 IN IP4 192.168.1.10\r\ns=Session\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        "a=control:*\r\na=range:npt=0-\r\n"
        "m=video 0 RTP/AVP 96\r\nb=AS:4096\r\na=rtpmap:96 H264/90000\r\n"
        "a=fmtp:96 packetization-mode=1;profile-level-id=640028;"
        "sprop-parameter-sets=Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvjyyLA\r\n"
        "a=control:trackID=1\r\na=framerate:25\r\na=framesize:96 1920-1080\r\n"
        "m=audio 0 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000/1\r\na=control:trackID=2\r\n"
    )
    h265 = (
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\n"
        "m=video 0 RTP/AVP 97\na=rtpmap:97 H265/90000\n"
        "a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwB4mZgJ;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwB4oAPAgBDlmWZJMrwFoCAAAAMAIAAAAwMh;"
        "sprop-pps=RAHBcrRiQA==\na=x-dimensions:1280,720\na=control:stream=0\n"
        "m=application 0 RTP/AVP 107\na=rtpmap:107 vnd.onvif.metadata/90000\n"
    )
    write("sdp", "h264", h264)
    write("sdp", "h264-content-type", b"application/sdp\x00" + h264.encode())
    write("sdp", "h265", h265)
    write("sdp", "wrong-content-type", b"text/html\x00<html></html>")


def auth_seeds():
    rest = "\0admin\0pa\"ss\\word\0DESCRIBE\0rtsp://192.168.1.10:554/stream1"
    write("www_authenticate", "digest-qop", 'Digest realm="IP Camera", nonce="0123abcd", qop="auth,auth-int", opaque="xyz"' + rest)
    write("www_authenticate", "digest-md5-sess", 'Digest realm="cam", nonce="n\\"1", algorithm=MD5-sess, qop="auth-int"' + rest)
    write("www_authenticate", "digest-no-qop", 'Digest realm="cam", nonce="abc", stale=FALSE' + rest)
    write("www_authenticate", "basic", 'Basic realm="camera"' + rest)
    write("www_authenticate", "joined", 'Digest realm="r", nonce="n", algorithm=SHA-256, Digest realm="r", nonce="n", algorithm=MD5, Basic realm="r"' + rest)
    write("www_authenticate", "unsupported", 'Negotiate, NTLM' + rest)


def sps_seeds(tmp):
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25", "-t", "0.04", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-f", "h264", f"{tmp}/a.264")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1920x1080:rate=25", "-t", "0.04", "-pix_fmt", "yuv420p",
           "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc", f"{tmp}/a.265")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=352x288:rate=30", "-t", "0.04", "-pix_fmt", "yuv422p",
           "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc", f"{tmp}/b.265")
    for nal in nal_units(open(f"{tmp}/a.264", "rb").read()):
        if nal[0] & 0x1F == 7:
            write("sps", "h264-720p", nal)
    for name in ("a", "b"):
        for nal in nal_units(open(f"{tmp}/{name}.265", "rb").read()):
            if (nal[0] >> 1) & 0x3F == 33:
                write("sps", f"h265-{name}", nal)
    # From src/probe/sps.rs tests: a 1080p camera SPS with VUI timing.
    write("sps", "h264-1080p", bytes.fromhex("67640028acd940780227e5c05a808080a0000003002000000791e30632c0"))


def fmp4_seeds(tmp):
    for codec, extra in (("libx264", ["-g", "3", "-bf", "2"]), ("libx265", ["-x265-params", "log-level=error:keyint=3", "-tag:v", "hvc1"])):
        out = f"{tmp}/{codec}.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "0.6", "-pix_fmt", "yuv420p",
               "-c:v", codec, *extra, "-movflags", "frag_keyframe+empty_moov+default_base_moof", out)
        top = list(boxes(open(out, "rb").read()))
        n = 0
        for i, (kind, b) in enumerate(top):
            if kind == b"moof" and i + 1 < len(top) and top[i + 1][0] == b"mdat" and n < 2:
                write("fmp4", f"{codec}-{n}", b + top[i + 1][1])
                n += 1


def frame(offset, arrival_ns, key, data):
    key = key.encode()
    body = struct.pack("<QqH", offset, arrival_ns, len(key)) + key + data
    ln = struct.pack("<I", len(body))
    return ln + struct.pack("<I", zlib.crc32(ln + body)) + body


def segment_seeds():
    frames = frame(100, 1_764_000_000_000_000_000, "camera-1", b'{"label":"dog"}') + frame(
        101, 1_764_000_000_500_000_000, "k\u00e9y", bytes(range(32)))
    write("segment_records", "frames", b"\x00" + frames)
    write("segment_records", "frames-fixcrc", b"\x01" + frames)
    write("segment_records", "frames-torn", b"\x00" + frames[:-5])
    # .idx: magic | base | next | len | first_arrival | last_arrival | count | entries | crc
    base, nxt, ln = 100, 102, 8 + len(frames)
    entries = [(100, 8, 1_764_000_000_000_000_000)]
    body = b"VGSIDX01" + struct.pack("<QQQqqI", base, nxt, ln, entries[0][2], 1_764_000_000_500_000_000, len(entries))
    body += b"".join(struct.pack("<QQq", *e) for e in entries)
    idx = body + struct.pack("<I", zlib.crc32(body))
    write("segment_records", "idx", b"\x02" + idx)
    write("segment_records", "idx-fixcrc", b"\x03" + idx)


def put_records_seeds():
    def rec(data, key, **kw):
        return {"Data": data, "PartitionKey": key, **kw}

    write("put_records", "two", json.dumps({"StreamName": "detections", "Records": [rec("eyJhIjoxfQ==", "cam-1"), rec("", "k")]}))
    write("put_records", "ehk", json.dumps({"StreamName": "s.1_-", "Records": [rec("AAEC", "k", ExplicitHashKey="340282366920938463463374607431768211455")]}))
    write("put_records", "nulls", json.dumps({"StreamName": "s", "StreamARN": None, "Records": [rec("QUJD", "\u00e9\u00e9", ExplicitHashKey=None)]}))
    write("put_records", "arn", json.dumps({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "Records": [rec("QUJD", "k")]}))
    write("put_records", "escaped", '{"StreamName":"s","Records":[{"Data":"QUJD","PartitionKey":"a\\"b"}]}')


def config_seeds():
    for name in ("example", "demo"):
        with open(os.path.join(ROOT, "configs", f"{name}.toml"), "rb") as f:
            write("config", name, f.read())
    write("config", "minimal", '[agent]\ndata_dir = "/var/lib/vidgest"\n\n[[camera]]\nname = "door"\n[camera.source]\nkind = "rtsp"\nurl = "rtsp://user:pw@10.0.0.2/stream"\n')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        sdp_seeds()
        auth_seeds()
        sps_seeds(tmp)
        fmp4_seeds(tmp)
        segment_seeds()
        put_records_seeds()
        config_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
