"""The README's promise for `make demo`, checked in headless Chromium (Playwright on the system
/usr/bin/chromium): the grid shows every camera live; on one camera's page the user scrolls the
timeline back, clicks a marker of a label (a dog), playback starts at that moment, and a range
selected around it downloads as an MP4 that ffprobe reads. Run by scripts/demo-walkthrough
against a running demo; prints each step and "walkthrough: checks passed"."""

import argparse
import json
import os
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("VIDGEST_CHROMIUM", "/usr/bin/chromium")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--camera", default="demo")
    ap.add_argument("--label", default="dog")
    ap.add_argument("--token", help="sign in with this token when the daemon has tokens")
    ap.add_argument("--out", default="target/demo-walkthrough")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
        context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=headers)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(
            f"console: {m.text} ({(m.location or {}).get('url', '')})"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        try:
            walk(a, page, context)
        finally:
            browser.close()
    if errors:
        # the health endpoint answers 503 with its body when degraded: not a page error
        errors = [e for e in errors if "503" not in e]
    if errors:
        sys.exit("\n".join(errors))
    print("walkthrough: checks passed")


def walk(a, page, context):
    # --- the grid: every camera streaming, each live view playing ---
    page.goto(f"{a.base}/")
    page.wait_for_selector(".card.camera")
    cameras = page.eval_on_selector_all(".card.camera", "cs => cs.map(c => c.dataset.camera)")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card.camera .live video')].length > 0 &&"
        " [...document.querySelectorAll('.card.camera .live video')].every(v => v.videoWidth > 0 && v.currentTime > 1)",
        timeout=30_000,
    )
    live = page.eval_on_selector_all(
        ".card.camera .live video", "vs => vs.map(v => [v.videoWidth, v.videoHeight, v.currentTime])"
    )
    page.screenshot(path=os.path.join(a.out, "1-grid.png"))
    print(f"grid: {len(cameras)} cameras {cameras}, live videos {live}")

    # --- the camera page: 10-minute view, scrolled back, a marker of the label ---
    page.goto(f"{a.base}/camera.html?name={a.camera}")
    page.wait_for_selector("#timeline .range")
    for _ in range(6):
        if page.text_content("#span").startswith("10 min"):
            break
        page.click("#zoom-in")
    # the legend's label: only its markers (in its colour) and detections
    page.click(f"#legend .label[data-label='{a.label}']", timeout=30_000)
    marker = f"#timeline .marker[data-label='{a.label}']"
    page.wait_for_selector(marker, timeout=30_000)
    others = page.eval_on_selector_all(
        "#timeline .marker", "ms => ms.filter(m => !m.dataset.labels.split(',').includes(%r)).length" % a.label
    )
    if others:
        raise AssertionError(f"{others} markers without {a.label} shown after choosing it in the legend")

    # scroll back while the earlier view still has one (a demo that just started has few)
    def pan(button):
        before = page.text_content("#span")
        page.click(button)
        # the view is redrawn (and its span text changed) once its fragments and events loaded
        page.wait_for_function("b => document.querySelector('#span').textContent !== b", arg=before)

    for _ in range(3):
        pan("#earlier")
        if page.query_selector(marker) is None:
            pan("#later")
            break
    page.wait_for_selector(marker)
    # the oldest one in view: what scrolling back was for
    t = page.eval_on_selector_all(marker, "ms => Math.min(...ms.map(m => Number(m.dataset.t)))")
    age = time.time() - t / 1000
    page.screenshot(path=os.path.join(a.out, "2-timeline.png"), full_page=True)
    page.click(f"{marker}[data-t='{t}']", force=True)
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v.readyState >= 2 && !v.paused && v.dataset.at; }",
        timeout=30_000,
    )
    at = int(page.get_attribute("#player", "data-at"))
    # within one fragment (the demo's are 2 s) plus a pixel of the 10-minute view
    if abs(at - t) > 3_000:
        raise AssertionError(f"playing at {at}, the {a.label} marker is at {t}")
    t0 = page.evaluate("() => document.querySelector('#player').currentTime")
    page.wait_for_function("t0 => document.querySelector('#player').currentTime > t0 + 1", arg=t0, timeout=30_000)
    page.screenshot(path=os.path.join(a.out, "3-playing.png"), full_page=True)
    print(f"timeline: {a.label} at {t} ({age:.0f} s ago); playback from {at}, time advances")

    # --- a range around the marker: the download is an MP4 ---
    x, y = page.eval_on_selector(
        f"{marker}[data-t='{t}']",
        "m => { const b = m.getBoundingClientRect(); return [b.left + b.width / 2, b.top + b.height / 2]; }",
    )
    left, right = page.eval_on_selector(
        "#timeline", "t => { const b = t.getBoundingClientRect(); return [b.left, b.right]; }"
    )
    # about 30 s either side of the marker (10 minutes across the timeline), inside it
    half = (right - left) / 40
    x0, x1 = max(left + 2, x - half), min(right - 2, x + half)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=4)
    page.mouse.move(x1, y, steps=4)
    page.mouse.up()
    href = page.get_attribute("#download", "href")
    if not href or "clip.mp4" not in href:
        raise AssertionError(f"no download link after selecting a range: {href}")
    r = context.request.get(f"{a.base}{href}")
    if r.status != 200 or r.headers.get("content-type") != "video/mp4":
        raise AssertionError(f"download: HTTP {r.status} {r.headers}")
    path = os.path.join(a.out, f"{a.camera}-{a.label}.mp4")
    with open(path, "wb") as f:
        f.write(r.body())
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height",
         "-of", "json", path], check=True, capture_output=True, text=True).stdout)
    page.screenshot(path=os.path.join(a.out, "4-selected.png"), full_page=True)
    s = probe["streams"][0]
    print(f"download: {href} -> {path}, {len(r.body())} bytes, {s['codec_name']} {s['width']}x{s['height']}, "
          f"{float(probe['format']['duration']):.1f} s")


if __name__ == "__main__":
    main()
