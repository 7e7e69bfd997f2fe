// Live video in real headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core). Run by ground-station/tests/video.rs, which starts a
// test camera like the simulator's (RTSP, capture time burned in) and the
// ground station with [video] for DRONE_ID, and passes GS_URL, PASSWORD,
// DRONE_ID, SCREENSHOT_DIR (optional: writes video.png there).
//
// Checks: anonymous and dispute-centre users get no video (401/403, no
// offer on the signalling socket, no video panel); an operator sees the
// drone's video play over WebRTC (frames decoded, the burned-in time read
// back from the pixels and advancing) and over the MJPEG fallback.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';
import { CHROMIUM_ARGS } from './video-common.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing env ${k}`); return v; };
const GS = env('GS_URL'), PW = env('PASSWORD'), DRONE = env('DRONE_ID');
const SHOTS = process.env.SCREENSHOT_DIR;
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);



async function login(browser, name, query = '') {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 860 } });
  const p = await ctx.newPage();
  p.on('console', (m) => { if (m.type() === 'error') log(`[${name} console]`, m.text()); });
  await p.goto(GS + '/' + query);
  await p.fill('#login-name', name);
  await p.fill('#login-password', PW);
  await p.click('#login-submit');
  await p.waitForSelector('#live-state.on', { timeout: 30000 });
  return p;
}

// In the page: read the burned-in time of what the element shows now.
const readShown = (sel) => {
  const el = document.querySelector(sel);
  const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight;
  if (!w || !h) return null;
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(el, 0, 0, w, h);
  return { w, h, t: window.tianchaVideo.readTimestamp(ctx, w) };
};

// Evaluated as an expression string (no eval in the page: its CSP forbids it).
const shown = (p, sel) => p.evaluate(`(${readShown.toString()})(${JSON.stringify(sel)})`);

async function waitAdvancing(p, sel, what) {
  let first = null;
  const until = Date.now() + 30000;
  while (Date.now() < until) {
    first = await shown(p, sel);
    if (first && first.t) break;
    await p.waitForTimeout(200);
  }
  assert.ok(first && first.t, `${what}: a burned-in time is readable from the frame (${JSON.stringify(first)})`);
  await p.waitForTimeout(1000);
  // A frame can misread (compression at a cell's edge): the code's check
  // rejects it; the next one reads.
  let later = null, misreads = 0;
  for (let i = 0; i < 50; i++) {
    later = await shown(p, sel);
    if (later && later.t && later.t > first.t) break;
    misreads++;
    await p.waitForTimeout(100);
  }
  assert.ok(later && later.t, `${what}: a burned-in time is readable from the frame again (${misreads} misreads)`);
  assert.ok(later.t > first.t, `${what}: the picture moves on (${first.t} then ${later.t})`);
  const lag = Date.now() - later.t;
  assert.ok(Math.abs(lag) < 10000, `${what}: the frame shows a recent time (${lag} ms behind)`);
  log(`${what}: ${later.w}x${later.h}, burned-in time advanced ${later.t - first.t} ms, shown ${lag} ms after capture (${misreads} misreads)`);
  return { first, later, lag };
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
const result = {};
try {
  // ------------------------------------------------------------ nobody
  for (const u of [`/api/drones/${DRONE}/video.mjpeg`, `/api/drones/${DRONE}/video/webrtc`, '/api/video']) {
    const r = await fetch(GS + u);
    assert.equal(r.status, 401, `anonymous ${u}`);
    assert.match(r.headers.get('content-type') || '', /json/, `anonymous ${u} gets an error, not media`);
  }
  log('anonymous: 401, no media');

  // ------------------------------------------------------------ dispute centre
  const dc = await login(browser, 'centre1');
  await dc.waitForTimeout(500);
  assert.equal(await dc.isVisible('#video-panel'), false, 'no video panel for the dispute centre');
  const dcTry = await dc.evaluate(async (drone) => {
    const r = await fetch(`/api/drones/${drone}/video.mjpeg`);
    const ws = await new Promise((ok) => {
      const s = new WebSocket(`ws://${location.host}/api/drones/${drone}/video/webrtc`);
      let got = 'nothing';
      s.onmessage = (e) => { got = e.data.slice(0, 40); };
      s.onerror = () => ok({ opened: false, got });
      s.onclose = () => ok({ opened: false, got });
      s.onopen = () => setTimeout(() => ok({ opened: true, got }), 3000);
    });
    return { mjpeg: r.status, type: r.headers.get('content-type'), ws };
  }, DRONE);
  assert.equal(dcTry.mjpeg, 403, 'dispute centre MJPEG');
  assert.equal(dcTry.ws.opened, false, 'dispute centre gets no signalling socket');
  assert.equal(dcTry.ws.got, 'nothing', 'dispute centre gets no offer');
  log('dispute centre: 403, no socket, no panel');
  await dc.context().close();

  // ------------------------------------------------------------ operator, WebRTC
  const op = await login(browser, 'op1');
  await op.waitForSelector('#video-panel:not([hidden])', { timeout: 10000 });
  await op.waitForFunction(() => window.tianchaVideo.mode === 'webrtc' && window.tianchaVideo.frames >= 10, null, { timeout: 40000, polling: 200 })
    .catch(async (e) => { throw new Error(`WebRTC did not play: ${await op.evaluate(() => JSON.stringify({ mode: window.tianchaVideo.mode, frames: window.tianchaVideo.frames, why: window.tianchaVideo.fallbackReason, status: document.getElementById('video-status').textContent }))}: ${e.message}`); });
  result.webrtc = await waitAdvancing(op, '#video', 'WebRTC');
  const q = await op.evaluate(() => { const v = document.getElementById('video'); const p = v.getVideoPlaybackQuality(); return { decoded: p.totalVideoFrames, dropped: p.droppedVideoFrames, frames: window.tianchaVideo.frames, mode: window.tianchaVideo.mode }; });
  assert.equal(q.mode, 'webrtc', 'still on WebRTC (no fallback)');
  assert.ok(q.decoded >= 10, `frames decoded: ${JSON.stringify(q)}`);
  result.webrtc.quality = q;
  log('WebRTC playing:', JSON.stringify(q));
  if (SHOTS) {
    await op.screenshot({ path: path.join(SHOTS, 'video.png') });
    log('screenshot', path.join(SHOTS, 'video.png'));
  }

  // ------------------------------------------------------------ operator, MJPEG fallback
  await op.selectOption('#video-mode', 'mjpeg');
  await op.waitForFunction(() => window.tianchaVideo.mode === 'mjpeg' && document.getElementById('video-mjpeg').naturalWidth > 0, null, { timeout: 30000 });
  result.mjpeg = await waitAdvancing(op, '#video-mjpeg', 'MJPEG');
  await op.click('#video-stop');
  await op.waitForTimeout(500);
  await op.click('#logout');
  await op.context().close();
  console.log('RESULT ' + JSON.stringify(result));
} finally {
  await browser.close();
}
