// vidgest web UI (docs/ui.md): one framework-free module for the three pages. Everything it
// shows comes from the REST API (docs/http-api.md); the pages pick their part by
// <body data-page>. No inline script or style: the pages' CSP forbids them.

const API = '/api/v1';
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/// The API answers at most 24 hours per fragments / events request.
const MAX_SPAN = DAY;
/// Browsers open about six HTTP/1.1 connections per host; each live feed keeps one, so the grid
/// streams only the first few cameras and shows refreshed snapshots for the others.
const GRID_LIVE_FEEDS = 4;

// ---- small helpers -------------------------------------------------------------------------

/** An element with properties (`class`, `text`, event handlers `on<name>`) and children. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const iso = (ms) => new Date(ms).toISOString();

// ---- sign-in (docs/ui.md#sign-in) ----------------------------------------------------------

/** The sign-in page, returning here afterwards. */
const signInUrl = () => `/login.html?next=${enc(location.pathname + location.search)}`;

/** Where the sign-in page may send the browser back to: a page of this site only. */
export function safeNext(next) {
  if (typeof next !== 'string' || !next.startsWith('/')) return '/';
  try {
    // as the URL parser reads it: `/` then a backslash or a tab can name another host
    const u = new URL(next, location.origin);
    return u.origin === location.origin ? u.pathname + u.search + u.hash : '/';
  } catch {
    return '/';
  }
}

/**
 * fetch() that sends the browser to the sign-in page when the API answers 401 (no session, or
 * it expired, or its token was removed from the configuration).
 */
async function apiFetch(url, options) {
  const r = await fetch(url, options);
  if (r.status === 401) {
    location.assign(signInUrl());
    throw new Error('signed out: going to the sign-in page');
  }
  return r;
}

/** A "sign out" control in the header when the daemon has tokens (auth on). */
async function sessionControl() {
  let who;
  try {
    who = await (await fetch(`${API}/session`, { headers: { Accept: 'application/json' } })).json();
  } catch {
    return;
  }
  if (!who.auth) return;
  const signOut = el('button', {
    type: 'button',
    id: 'sign-out',
    text: 'Sign out',
    title: who.signed_in ? `signed in (${who.scope})` : 'not signed in',
    onclick: async () => {
      await fetch(`${API}/session`, { method: 'DELETE' });
      location.assign('/login.html');
    },
  });
  document.querySelector('header').append(
    el('span', { class: 'session muted', text: who.signed_in ? `signed in (${who.scope})` : '' }),
    signOut,
  );
}

async function loginPage() {
  const next = safeNext(new URLSearchParams(location.search).get('next'));
  const form = $('login');
  const error = $('error');
  const who = await (await fetch(`${API}/session`)).json();
  if (!who.auth) {
    error.textContent = 'This daemon has no API tokens: no sign-in needed.';
    location.replace(next);
    return;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const r = await fetch(`${API}/session`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: $('token').value }),
    });
    if (r.ok) {
      // An HttpOnly cookie is invisible to scripts: ask the daemon whether it came back.
      const now = await (await fetch(`${API}/session`)).json();
      if (!now.signed_in) {
        error.textContent =
          'Signed in, but the browser did not keep the session cookie: it keeps Secure cookies ' +
          'only over HTTPS or on a loopback address. Configure tls_cert and tls_key (docs/ui.md).';
        return;
      }
      location.replace(next);
      return;
    }
    let why = r.statusText;
    try {
      why = (await r.json()).error || why;
    } catch {
      // keep the status text
    }
    error.textContent = r.status === 401 ? 'Wrong token.' : why;
    $('token').select();
  });
}

/** GET a JSON document of the API; degraded health (503) still has a body worth showing. */
async function getJson(path) {
  const r = await apiFetch(API + path, { headers: { Accept: 'application/json' } });
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (!r.ok && !(r.status === 503 && body)) {
    const why = body && body.error ? body.error : r.statusText;
    throw new Error(`${path}: ${r.status} ${why}`);
  }
  return body;
}

function fmtTime(ms, withDate = true) {
  const d = new Date(ms);
  return withDate ? d.toLocaleString() : d.toLocaleTimeString();
}

function fmtSpan(ms) {
  if (ms >= DAY) return `${+(ms / DAY).toFixed(1)} d`;
  if (ms >= HOUR) return `${+(ms / HOUR).toFixed(1)} h`;
  if (ms >= MIN) return `${+(ms / MIN).toFixed(1)} min`;
  return `${+(ms / SEC).toFixed(1)} s`;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A stable colour per detection label. */
function labelColor(label) {
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h}, 75%, 60%)`;
}

const cameraUrl = (name, rest) => `${API}/cameras/${enc(name)}/${rest}`;
const clipUrl = (name, start, end) =>
  cameraUrl(name, `clip.mp4?start=${enc(iso(start))}&end=${enc(iso(end))}`);

// ---- live view -----------------------------------------------------------------------------

/** End offset of the init segment (through `moov`) in `bytes`, or -1 while it is incomplete. */
export function initSegmentEnd(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + 8 <= bytes.length) {
    let size = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (size === 1) {
      if (at + 16 > bytes.length) return -1;
      size = Number(view.getBigUint64(at + 8));
    }
    if (size < 8) return -1;
    if (type === 'moov') return at + size <= bytes.length ? at + size : -1;
    at += size;
  }
  return -1;
}

function findBox(bytes, type) {
  const t = [...type].map((c) => c.charCodeAt(0));
  for (let i = 0; i + 4 <= bytes.length; i += 1) {
    if (bytes[i] === t[0] && bytes[i + 1] === t[1] && bytes[i + 2] === t[2] && bytes[i + 3] === t[3]) {
      return i;
    }
  }
  return -1;
}

const hex2 = (b) => b.toString(16).padStart(2, '0');

/** The RFC 6381 codecs string of an init segment (H.264 avcC or H.265 hvcC). */
export function codecString(init) {
  const avc = findBox(init, 'avcC');
  if (avc >= 0) return `avc1.${hex2(init[avc + 5])}${hex2(init[avc + 6])}${hex2(init[avc + 7])}`;
  const hvc = findBox(init, 'hvcC');
  if (hvc >= 0) {
    const p = hvc + 4;
    const space = ['', 'A', 'B', 'C'][init[p + 1] >> 6];
    const tier = (init[p + 1] >> 5) & 1 ? 'H' : 'L';
    const profile = init[p + 1] & 0x1f;
    let compat = 0;
    for (let i = 0; i < 4; i += 1) compat = (compat << 8) | init[p + 2 + i];
    let reversed = 0;
    for (let i = 0; i < 32; i += 1) reversed = ((reversed << 1) | ((compat >>> i) & 1)) >>> 0;
    const constraints = [...init.subarray(p + 6, p + 12)];
    while (constraints.length && constraints[constraints.length - 1] === 0) constraints.pop();
    const entry = findBox(init, 'hev1') >= 0 ? 'hev1' : 'hvc1';
    const tail = constraints.map((b) => `.${b.toString(16)}`).join('');
    return `${entry}.${space}${profile}.${reversed.toString(16)}.${tier}${init[p + 12]}${tail}`;
  }
  return 'avc1.42e01e';
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Plays the low-latency feed (`live.mp4`: an init segment, then one moof+mdat per access unit)
 * through Media Source Extensions into a new <video> in `box`. Resolves false when the feed is
 * not there (404: a daemon without it) so the caller falls back; resolves true when the feed ended.
 */
async function liveMse(box, name, onKind) {
  if (!window.MediaSource) return false;
  const resp = await apiFetch(cameraUrl(name, 'live.mp4'));
  if (!resp.ok || !resp.body) return false;
  onKind('low-latency');
  return playFmp4(box, resp);
}

/**
 * Plays a fragmented MP4 response body, as it arrives, through MSE in a new <video> in `box`,
 * staying at the live edge. Resolves false when the browser cannot play the codec, true when
 * the body ended. Exported for the UI test, which feeds it a `clip.mp4`.
 */
export async function playFmp4(box, resp) {
  const video = el('video', { autoplay: true, playsInline: true, class: 'live-video' });
  video.muted = true;
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  box.replaceChildren(video);
  await new Promise((resolve) => source.addEventListener('sourceopen', resolve, { once: true }));
  const reader = resp.body.getReader();
  const queue = [];
  let head = new Uint8Array(0);
  let buffer = null;
  const pump = () => {
    if (buffer && !buffer.updating && queue.length && source.readyState === 'open') {
      buffer.appendBuffer(queue.shift());
    }
  };
  // MSE players drift behind: jump to the live edge when more than a second behind, and drop
  // what is long played so the buffer stays small.
  const keepLive = () => {
    const b = video.buffered;
    if (!b.length) return;
    const edge = b.end(b.length - 1);
    if (edge - video.currentTime > 1) video.currentTime = Math.max(b.start(b.length - 1), edge - 0.1);
    if (!buffer.updating && video.currentTime - b.start(0) > 60) buffer.remove(0, video.currentTime - 30);
    if (video.paused) video.play().catch(() => {});
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!buffer) {
        head = concat(head, value);
        const end = initSegmentEnd(head);
        if (end < 0) continue;
        const type = `video/mp4; codecs="${codecString(head.subarray(0, end))}"`;
        if (!MediaSource.isTypeSupported(type)) {
          reader.cancel();
          return false;
        }
        buffer = source.addSourceBuffer(type);
        // each moof carries its own decode time: "segments", not "sequence"
        buffer.mode = 'segments';
        buffer.addEventListener('updateend', () => {
          keepLive();
          pump();
        });
        queue.push(head);
      } else {
        queue.push(value);
      }
      pump();
    }
  } catch (e) {
    console.warn('fMP4 stream stopped:', e.message);
  }
  return true;
}

/** Native HLS (Safari, some Chromium builds): the KVS-style LIVE session URL in a <video>. */
async function liveHls(box, name, onKind, width) {
  const video = el('video', { autoplay: true, playsInline: true, class: 'live-video' });
  if (!video.canPlayType('application/vnd.apple.mpegurl')) return false;
  const r = await apiFetch('/getHLSStreamingSessionURL', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ StreamName: name, PlaybackMode: 'LIVE' }),
  });
  if (!r.ok) return false;
  const { HLSStreamingSessionURL: url } = await r.json();
  if (!url) return false;
  video.muted = true;
  // a player that gives up (Chromium's native HLS sometimes fails to parse a live segment)
  // leaves a frozen picture: show refreshed snapshots instead
  video.addEventListener(
    'error',
    () => {
      console.warn('HLS of', name, 'failed:', video.error && video.error.message);
      liveSnapshots(box, name, onKind, width);
    },
    { once: true },
  );
  video.src = url;
  box.replaceChildren(video);
  onKind('HLS');
  return true;
}

/** The last resort: the newest stored key frame, refreshed every 2 s. */
function liveSnapshots(box, name, onKind, width) {
  const img = el('img', { alt: `${name} (latest picture)`, class: 'live-img' });
  box.replaceChildren(img);
  onKind('snapshots');
  const load = () => {
    const next = new Image();
    next.onload = () => {
      img.src = next.src;
    };
    next.src = cameraUrl(name, `snapshot.jpg?width=${width}&t=${Date.now()}`);
  };
  load();
  setInterval(load, 2 * SEC);
}

/** A live view in `box`: low-latency MSE feed, else native HLS, else refreshed snapshots. */
async function startLive(box, name, { onKind = () => {}, width = 640, stream = true } = {}) {
  if (stream) {
    try {
      for (;;) {
        if (!(await liveMse(box, name, onKind))) break;
        // the feed ended (daemon restart, camera reconnect): open it again shortly
        await new Promise((resolve) => setTimeout(resolve, 2 * SEC));
      }
    } catch (e) {
      console.warn('no low-latency feed for', name, e.message);
    }
    try {
      if (await liveHls(box, name, onKind, width)) return;
    } catch (e) {
      console.warn('no HLS for', name, e.message);
    }
  }
  liveSnapshots(box, name, onKind, width);
}

// ---- cameras grid --------------------------------------------------------------------------

async function gridPage() {
  const grid = $('grid');
  const cards = new Map();
  // per camera, recent (time, counters) samples for fps and bitrate
  const samples = new Map();
  let cameras;
  try {
    ({ cameras } = await getJson('/cameras'));
  } catch (e) {
    $('status').textContent = e.message;
    return;
  }
  $('status').textContent = cameras.length ? '' : 'No cameras configured.';
  cameras.forEach((cam, i) => {
    const live = el('div', { class: 'live' });
    const kind = el('span', { class: 'muted' });
    const fields = {
      state: el('dd'),
      fps: el('dd', { text: '—' }),
      bitrate: el('dd', { text: '—' }),
      detection: el('dd', { text: cam.detection_stream ? 'none yet' : 'off' }),
    };
    const card = el(
      'article',
      { class: 'card camera', 'data-camera': cam.name },
      el('h2', {}, el('a', { href: `/camera.html?name=${enc(cam.name)}`, text: cam.name }), kind),
      live,
      el(
        'dl',
        {},
        el('dt', { text: 'State' }), fields.state,
        el('dt', { text: 'Frame rate' }), fields.fps,
        el('dt', { text: 'Bitrate' }), fields.bitrate,
        el('dt', { text: 'Last detection' }), fields.detection,
      ),
    );
    grid.append(card);
    cards.set(cam.name, { fields, lastEvent: null });
    startLive(live, cam.name, {
      onKind: (k) => {
        kind.textContent = k;
      },
      width: 480,
      stream: i < GRID_LIVE_FEEDS,
    });
  });

  const showState = (cam) => {
    const { fields } = cards.get(cam.name) || {};
    if (!fields) return;
    fields.state.replaceChildren(
      el('span', { class: `state-${cam.state}`, text: cam.state }),
      cam.detail ? el('span', { class: 'muted', text: ` (${cam.detail})` }) : null,
    );
    const now = performance.now();
    const list = samples.get(cam.name) || [];
    list.push({ now, c: cam.counters });
    // rates over the last ~10 s: fragments (and so bytes) arrive in bursts
    while (list.length > 2 && now - list[0].now > 10 * SEC) list.shift();
    samples.set(cam.name, list);
    if (list.length >= 2) {
      const first = list[0];
      const secs = (now - first.now) / SEC;
      const fps = (cam.counters.access_units - first.c.access_units) / secs;
      const bps = ((cam.counters.bytes_stored - first.c.bytes_stored) * 8) / secs;
      fields.fps.textContent = `${fps.toFixed(1)} fps`;
      fields.bitrate.textContent = bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${(bps / 1e3).toFixed(0)} kbit/s`;
    }
  };
  cameras.forEach(showState);

  const lastDetection = async (cam, since) => {
    const card = cards.get(cam.name);
    let cursor = null;
    for (let page = 0; page < 10; page += 1) {
      const q = `start=${enc(since)}&end=now&limit=1000${cursor ? `&cursor=${enc(cursor)}` : ''}`;
      const r = await getJson(`/cameras/${enc(cam.name)}/events?${q}`);
      const last = r.events[r.events.length - 1];
      if (last) card.lastEvent = last;
      cursor = r.cursor;
      if (!cursor) break;
    }
    const e = card.lastEvent;
    if (e) {
      const labels = [...new Set(e.detections.map((d) => d.label))].join(', ');
      card.fields.detection.textContent = `${labels} at ${fmtTime(Date.parse(e.timestamp))}`;
    }
  };
  const withDetection = cameras.filter((c) => c.detection_stream);
  const refreshDetections = (since) =>
    Promise.all(withDetection.map((c) => lastDetection(c, since))).catch((e) => {
      $('status').textContent = e.message;
    });
  refreshDetections('-24h');
  setInterval(() => refreshDetections('-2m'), 10 * SEC);
  setInterval(async () => {
    try {
      (await getJson('/cameras')).cameras.forEach(showState);
      $('status').textContent = '';
    } catch (e) {
      $('status').textContent = e.message;
    }
  }, 2 * SEC);
}

// ---- camera page: timeline and playback ----------------------------------------------------

const ZOOMS = [10 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 3 * DAY, 7 * DAY];
const TICKS = [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY];

/** Pages through a per-day-limited API listing over [start, end] in ≤24 h slices. */
async function collect(start, end, fetchSlice, maxRequests) {
  const out = [];
  let requests = 0;
  for (let from = start; from < end && requests < maxRequests; from += MAX_SPAN) {
    const to = Math.min(end, from + MAX_SPAN);
    let next = { from, cursor: null };
    while (next && requests < maxRequests) {
      requests += 1;
      next = await fetchSlice(next, to, out);
    }
  }
  return { items: out, partial: requests >= maxRequests };
}

async function cameraPage() {
  const name = new URLSearchParams(location.search).get('name');
  if (!name) {
    $('status').textContent = 'No camera named: open a camera from the grid.';
    return;
  }
  document.title = `vidgest — ${name}`;
  $('title').textContent = name;
  startLive($('live'), name, {
    onKind: (k) => {
      $('live-kind').textContent = `(${k})`;
    },
  });

  const timeline = $('timeline');
  const player = $('player');
  const view = { span: HOUR, end: Date.now(), follow: true };
  let fragments = [];
  let events = [];
  let selection = null;
  // the label chosen in the legend (null: every label)
  let only = null;
  const shown = (e) => only === null || e.labels.includes(only);
  // the clip in the player: its first fragment's start, so player time maps to wall time
  let playing = null;
  let anchor = null;

  const msPerPx = () => view.span / Math.max(1, timeline.clientWidth);
  const start = () => view.end - view.span;
  const xOf = (t) => ((t - start()) / view.span) * 100;
  const timeAt = (clientX) => {
    const r = timeline.getBoundingClientRect();
    return start() + ((clientX - r.left) / r.width) * view.span;
  };

  async function loadFragments() {
    const { items, partial } = await collect(start(), view.end, async (next, to, out) => {
      const r = await getJson(
        `/cameras/${enc(name)}/fragments?start=${enc(iso(next.from))}&end=${enc(iso(to))}&limit=10000`,
      );
      for (const f of r.fragments) {
        const t = Date.parse(f.producer_timestamp);
        out.push({ start: t, end: t + f.duration_ms, number: f.number });
      }
      // a full page: continue after its last fragment
      return r.fragments.length === 10000 ? { from: out[out.length - 1].start + 1 } : null;
    }, 40);
    fragments = items;
    return partial;
  }

  async function loadEvents() {
    const { items, partial } = await collect(start(), view.end, async (next, to, out) => {
      const q = `start=${enc(iso(next.from))}&end=${enc(iso(to))}&limit=1000${next.cursor ? `&cursor=${enc(next.cursor)}` : ''}`;
      const r = await getJson(`/cameras/${enc(name)}/events?${q}`);
      for (const e of r.events) {
        out.push({ t: Date.parse(e.timestamp), labels: [...new Set(e.detections.map((d) => d.label))] });
      }
      return r.cursor ? { from: next.from, cursor: r.cursor } : null;
    }, 20);
    events = items;
    return partial;
  }

  /** Recorded ranges: fragments merged when the gap between them is under a pixel. */
  function ranges() {
    const tolerance = Math.max(250, msPerPx());
    const out = [];
    for (const f of fragments) {
      const last = out[out.length - 1];
      if (last && f.start - last.end <= tolerance) last.end = Math.max(last.end, f.end);
      else out.push({ start: f.start, end: f.end });
    }
    return out;
  }

  function drawAxis() {
    const step = TICKS.find((s) => view.span / s <= 8) || DAY;
    const offset = new Date().getTimezoneOffset() * MIN;
    const ticks = [];
    // ticks at local round times
    for (let t = Math.ceil((start() - offset) / step) * step + offset; t <= view.end; t += step) {
      ticks.push(el('span', { text: step >= DAY ? new Date(t).toLocaleDateString() : fmtTime(t, view.span > DAY) }));
      ticks[ticks.length - 1].style.left = `${xOf(t)}%`;
    }
    $('axis').replaceChildren(...ticks);
  }

  function draw() {
    const parts = [];
    for (const r of ranges()) {
      if (r.end < start() || r.start > view.end) continue;
      const div = el('div', { class: 'range', title: `recorded ${fmtTime(r.start)} – ${fmtTime(r.end)}` });
      div.style.left = `${Math.max(0, xOf(r.start))}%`;
      div.style.width = `${Math.max(0.2, Math.min(100, xOf(r.end)) - Math.max(0, xOf(r.start)))}%`;
      parts.push(div);
    }
    const labels = new Set();
    for (const e of events) {
      e.labels.forEach((l) => labels.add(l));
      if (!shown(e)) continue;
      // with a label chosen in the legend, its markers wear its colour
      const label = only ?? (e.labels[0] || 'detection');
      const b = el('button', {
        type: 'button',
        class: 'marker',
        title: `${e.labels.join(', ')} at ${fmtTime(e.t)}`,
        'data-t': String(e.t),
        'data-label': label,
        'data-labels': e.labels.join(','),
      });
      b.style.left = `${xOf(e.t)}%`;
      b.style.background = labelColor(label);
      parts.push(b);
    }
    if (only) labels.add(only);
    if (selection) {
      const s = el('div', { class: 'selection' });
      s.style.left = `${xOf(selection[0])}%`;
      s.style.width = `${xOf(selection[1]) - xOf(selection[0])}%`;
      parts.push(s);
    }
    if (playing) {
      const c = el('div', { class: 'cursor', id: 'cursor' });
      c.style.left = `${xOf(playing.base + player.currentTime * SEC)}%`;
      parts.push(c);
    }
    timeline.replaceChildren(...parts);
    // each label in the legend is a toggle: only its markers and detections, or all again
    $('legend').replaceChildren(
      ...[...labels].sort().map((l) =>
        el(
          'button',
          {
            type: 'button',
            class: l === only ? 'label chosen' : 'label',
            'data-label': l,
            title: l === only ? 'Show every label' : `Show only ${l}`,
            onclick: () => {
              only = only === l ? null : l;
              draw();
              drawDetections();
            },
          },
          el('i', { class: 'swatch', 'data-label': l }),
          l,
        ),
      ),
    );
    for (const i of $('legend').querySelectorAll('i')) i.style.background = labelColor(i.dataset.label);
    $('span').textContent = `${fmtSpan(view.span)} to ${fmtTime(view.end)}`;
    drawAxis();
  }

  function drawDetections() {
    const list = events.filter(shown).slice(-100).reverse();
    // A detection is reported while its fragment is still being recorded: its picture exists
    // once that fragment is stored, so until then (the next refresh) a placeholder stands in.
    const storedUntil = fragments.reduce((m, f) => Math.max(m, f.end), 0);
    $('detections').replaceChildren(
      ...list.map((e) =>
        el(
          'li',
          { 'data-t': String(e.t), onclick: () => play(e.t) },
          e.t < storedUntil
            ? el('img', {
                loading: 'lazy',
                alt: e.labels.join(', '),
                src: cameraUrl(name, `snapshot.jpg?at=${enc(iso(e.t))}&width=160`),
              })
            : el('div', { class: 'thumb pending', text: 'recording…' }),
          el('div', {}, el('strong', { text: e.labels.join(', ') || 'detection' }), el('br'), fmtTime(e.t)),
        ),
      ),
    );
    if (!list.length) $('detections').append(el('li', { class: 'muted', text: 'No detections in this range.' }));
  }

  let loading = 0;
  async function refresh() {
    if (view.follow) view.end = Date.now();
    const mine = (loading += 1);
    try {
      const [pf, pe] = await Promise.all([loadFragments(), loadEvents()]);
      if (mine !== loading) return;
      $('status').textContent = pf || pe ? 'Showing part of this range (too much to list): zoom in for all of it.' : '';
    } catch (e) {
      $('status').textContent = e.message;
    }
    draw();
    drawDetections();
  }

  /** Plays from `t`: the clip from t to t+10 min starts at the key frame of t's fragment. */
  function play(t) {
    const holding = fragments.find((f) => f.start <= t && t < f.end);
    const after = fragments.find((f) => f.start >= t);
    const base = holding ? holding.start : after ? after.start : t;
    playing = { base, t };
    delete player.dataset.at;
    player.src = clipUrl(name, t, t + 10 * MIN);
    player.addEventListener(
      'loadedmetadata',
      () => {
        player.currentTime = Math.max(0, (t - base) / SEC);
        player.play().catch(() => {});
      },
      { once: true },
    );
    $('play-at').textContent = `from ${fmtTime(t)}`;
    draw();
  }

  player.addEventListener('timeupdate', () => {
    if (!playing) return;
    const at = playing.base + player.currentTime * SEC;
    // the wall time being shown, for the UI test and anyone scripting the page
    player.dataset.at = String(Math.round(at));
    $('play-at').textContent = `at ${fmtTime(at)}`;
    const c = $('cursor');
    if (c) c.style.left = `${xOf(at)}%`;
  });

  function select(a, b) {
    selection = [Math.min(a, b), Math.max(a, b)];
    const [s, e] = selection;
    const box = $('selection');
    if (e - s > MAX_SPAN) {
      box.textContent = `Selected ${fmtSpan(e - s)}: a download covers at most 24 hours.`;
    } else {
      box.replaceChildren(
        `Selected ${fmtTime(s)} – ${fmtTime(e)} (${fmtSpan(e - s)}): `,
        el('a', { id: 'download', href: clipUrl(name, s, e), download: `${name}-${iso(s)}.mp4`, text: 'download MP4' }),
      );
    }
    draw();
  }

  // click: play; shift-click: range from the last click; drag: range
  let down = null;
  timeline.addEventListener('pointerdown', (ev) => {
    down = { x: ev.clientX, t: timeAt(ev.clientX), marker: ev.target.closest('.marker') };
  });
  timeline.addEventListener('pointermove', (ev) => {
    if (down && ev.buttons && Math.abs(ev.clientX - down.x) > 4) {
      selection = [Math.min(down.t, timeAt(ev.clientX)), Math.max(down.t, timeAt(ev.clientX))];
      draw();
    }
  });
  timeline.addEventListener('pointerup', (ev) => {
    if (!down) return;
    const t = timeAt(ev.clientX);
    if (Math.abs(ev.clientX - down.x) > 4) {
      select(down.t, t);
    } else if (ev.shiftKey && anchor !== null) {
      select(anchor, t);
    } else if (down.marker) {
      play(Number(down.marker.dataset.t));
      anchor = Number(down.marker.dataset.t);
    } else {
      play(t);
      anchor = t;
    }
    down = null;
  });

  const zoom = (dir, around) => {
    const i = ZOOMS.findIndex((z) => z >= view.span);
    const next = ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, (i < 0 ? ZOOMS.length - 1 : i) + dir))];
    if (next === view.span) return;
    // the buttons keep the live edge in view while following it, else zoom about the middle
    if (around === undefined && view.follow) {
      view.span = next;
      refresh();
      return;
    }
    const at = around ?? view.end - view.span / 2;
    const frac = (at - start()) / view.span;
    view.end = Math.min(Date.now(), at + (1 - frac) * next);
    view.span = next;
    view.follow = view.end >= Date.now() - SEC;
    refresh();
  };
  const pan = (dir) => {
    view.end = Math.min(Date.now(), view.end + (dir * view.span) / 2);
    view.follow = view.end >= Date.now() - SEC;
    refresh();
  };
  timeline.addEventListener(
    'wheel',
    (ev) => {
      ev.preventDefault();
      zoom(ev.deltaY > 0 ? 1 : -1, timeAt(ev.clientX));
    },
    { passive: false },
  );
  $('zoom-in').addEventListener('click', () => zoom(-1));
  $('zoom-out').addEventListener('click', () => zoom(1));
  $('earlier').addEventListener('click', () => pan(-1));
  $('later').addEventListener('click', () => pan(1));
  $('now').addEventListener('click', () => {
    view.follow = true;
    refresh();
  });

  const snapshot = () => {
    const next = new Image();
    next.onload = () => {
      $('snapshot').src = next.src;
      $('snap-time').textContent = '';
    };
    next.src = cameraUrl(name, `snapshot.jpg?width=640&t=${Date.now()}`);
  };
  snapshot();
  setInterval(snapshot, 10 * SEC);
  await refresh();
  setInterval(() => {
    if (view.follow) refresh();
  }, 10 * SEC);
}

// ---- health --------------------------------------------------------------------------------

function cell(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A table of `rows` (objects) with `columns` ([key, heading, format?]), or a note when empty. */
function table(rows, columns) {
  if (!rows || !rows.length) return el('p', { class: 'muted', text: 'none' });
  return el(
    'table',
    {},
    el('thead', {}, el('tr', {}, columns.map(([, h]) => el('th', { text: h })))),
    el('tbody', {}, rows.map((r) => el('tr', {}, columns.map(([k, , f]) => el('td', { text: f ? f(r[k], r) : cell(r[k]) }))))),
  );
}

const allColumns = (rows) => [...new Set(rows.flatMap((r) => Object.keys(r)))].map((k) => [k, k.replaceAll('_', ' ')]);

async function healthPage() {
  const out = $('health');
  const render = async () => {
    let h;
    try {
      h = await getJson('/health');
    } catch (e) {
      out.replaceChildren(el('p', { class: 'problems', text: e.message }));
      return;
    }
    $('overall').textContent = h.status;
    $('overall').className = `badge ${h.status}`;
    $('problems').replaceChildren(...(h.problems || []).map((p) => el('li', { text: cell(p) })));
    const storage = h.storage || {};
    const deliveries = h.deliveries || [];
    out.replaceChildren(
      el('h2', { text: 'Cameras' }),
      table(h.cameras, [
        ['name', 'camera', (v) => v],
        ['state', 'state'],
        ['detail', 'detail'],
      ]),
      el('h2', { text: `Detection (${h.detection ? h.detection.workers : 0} inference workers)` }),
      table(h.detection && h.detection.cameras, [
        ['camera', 'camera'],
        ['stream', 'records stream'],
      ]),
      el('h2', { text: 'Shard streams' }),
      table(h.shard_streams, [
        ['name', 'stream'],
        ['shards', 'shards'],
        ['retention_hours', 'retention (h)'],
        ['bytes', 'stored', fmtBytes],
        ['records', 'records'],
      ]),
      el('h2', { text: 'Deliveries and forwarders (consumer lag)' }),
      table(deliveries, deliveries.length ? allColumns(deliveries) : []),
      el('h2', { text: 'Disk' }),
      table(
        [storage],
        [
          ['video_bytes', 'video', fmtBytes],
          ['free_bytes', 'free', fmtBytes],
          ['min_free_bytes', 'minimum free', fmtBytes],
        ],
      ),
      el('h2', { text: 'Retention horizon' }),
      table(storage.cameras, [
        ['camera', 'camera'],
        ['bytes', 'video', fmtBytes],
        ['fragments', 'fragments'],
        ['oldest', 'oldest', (v) => (v ? fmtTime(Date.parse(v)) : '—')],
        ['newest', 'newest', (v) => (v ? fmtTime(Date.parse(v)) : '—')],
        ['retention_hours', 'retention (h)', (v) => (v === null || v === undefined ? '—' : (+v.toFixed(2)).toString())],
        ['horizon_seconds', 'horizon', (v) => (v === null || v === undefined ? '—' : fmtSpan(v * SEC))],
      ]),
    );
  };
  await render();
  setInterval(render, 5 * SEC);
}

const pages = { grid: gridPage, camera: cameraPage, health: healthPage, login: loginPage };
const page = pages[document.body.dataset.page];
if (page) page();
if (page && page !== loginPage) sessionControl();
