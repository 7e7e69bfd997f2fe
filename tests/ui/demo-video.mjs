// The demo's live video in real headless Chromium: the simulator's camera
// (capture time burned in) → the companion (eye + overlay, H.264, RTSP) →
// the ground station (WebRTC) → the browser, next to the map. Run by
// cli/tests/demo_e2e.rs while `tiancha demo` flies.
//
// env: GS_URL, GS_USER, PASSWORD; TIMEOUT_S (default 420);
//      SCREENSHOT (optional: a PNG of the page once the overlay shows);
//      WAIT_FOR_INCIDENT=1 (then retake it once an incident's box shows).
//
// Passes when one shown frame both carries the simulator's burned-in
// time (so it is the sim camera's picture, live: its age is printed) and
// the overlay: at least MIN_OVERLAY_PX pixels in the overlay's track or
// incident colours (inference::video_out::overlay::{TRACK,EVENT}_COLOUR),
// which the simulator never renders. Prints one `RESULT {json}` line.
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './video-common.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing env ${k}`); return v; };
const GS = env('GS_URL'), USER = env('GS_USER'), PW = env('PASSWORD');
// One track's box and label alone are several hundred pixels at 640×360;
// the simulator's palette (muted field greens, terracotta, grey) is more
// than 45 levels from both overlay colours in some channel.
const TIMEOUT_S = Number(process.env.TIMEOUT_S || 420), MIN_OVERLAY_PX = 300;
const log = (...a) => console.error(new Date().toISOString().slice(11, 23), ...a);

// In the page: what the video element shows now.
const look = () => {
  const V = window.tianchaVideo;
  const el = V.mode === 'mjpeg' ? document.getElementById('video-mjpeg') : document.getElementById('video');
  const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight;
  if (!w || !h) return { mode: V.mode, frames: V.frames };
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(el, 0, 0, w, h);
  const t = V.readTimestamp(ctx, w), now = Date.now();
  // Overlay colours, RGB: tracks (60,200,60), incidents (230,30,30).
  const d = ctx.getImageData(0, 0, w, h).data;
  let track = 0, event = 0;
  const near = (k, r, g, b) => Math.abs(d[k] - r) < 45 && Math.abs(d[k + 1] - g) < 45 && Math.abs(d[k + 2] - b) < 45;
  for (let k = 0; k < d.length; k += 4) {
    if (near(k, 60, 200, 60)) track++;
    else if (near(k, 230, 30, 30)) event++;
  }
  return { mode: V.mode, frames: V.frames, w, h, t, age_ms: t ? now - t : null, track_px: track, event_px: event };
};

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
let code = 1;
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 860 } });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') log('[console]', m.text()); });
  await page.goto(GS + '/');
  await page.fill('#login-name', USER);
  await page.fill('#login-password', PW);
  await page.click('#login-submit');
  await page.waitForSelector('#live-state.on', { timeout: 30000 });
  await page.waitForSelector('#video-panel:not([hidden])', { timeout: 30000 });
  const until = Date.now() + TIMEOUT_S * 1000;
  let best = null, seen = 0, readable = 0, lastT = null, lastNew = Date.now();
  const ages = [];
  while (Date.now() < until) {
    let s;
    try { s = await page.evaluate(`(${look.toString()})()`); } catch (e) { if (!code) break; throw e; }
    if (s.w) seen++;
    if (s.t) { readable++; ages.push(s.age_ms); if (s.t !== lastT) { lastT = s.t; lastNew = Date.now(); } }
    // After passing: the picture stopped (the demo is over).
    if (!code && Date.now() - lastNew > 10000) break;
    if (!best || (s.t && s.track_px + s.event_px > best.track_px + best.event_px)) best = s;
    if (code && s.t && s.track_px + s.event_px >= MIN_OVERLAY_PX) {
      if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
      const status = await page.textContent('#video-status');
      console.log('RESULT ' + JSON.stringify({ ok: true, ...s, status, looks: seen, readable, median_age_ms: ages.sort((a, b) => a - b)[ages.length >> 1] }));
      code = 0;
      // Passed. WAIT_FOR_INCIDENT=1: watch on for an incident's overlay
      // (a better screenshot) until the demo ends or time is up. Not in
      // the test's own runs: the browser would take CPU from the eye.
      if (!process.env.SCREENSHOT || !process.env.WAIT_FOR_INCIDENT) break;
    }
    if (!code && s.t && s.event_px >= MIN_OVERLAY_PX) {
      await page.screenshot({ path: process.env.SCREENSHOT });
      log('incident overlay shown', JSON.stringify(s));
      break;
    }
    if (seen % 40 === 1) log('video', JSON.stringify(s));
    await page.waitForTimeout(500);
  }
  if (code) console.log('RESULT ' + JSON.stringify({ ok: false, looks: seen, readable, best }));
} finally {
  await browser.close();
}
process.exit(code);
