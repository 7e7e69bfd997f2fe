// Viewers that come and go must not leak: run by cli/tests/video_leak.rs.
// In real headless Chromium, logged in as an operator, open and close
// ROUNDS MJPEG viewers (read a frame, abort), ROUNDS WebRTC signalling
// sessions (the station builds a webrtcbin pipeline and sends its offer,
// then the socket closes) and FULL complete WebRTC sessions (frames
// decoded), measuring the station's RSS (/proc/GS_PID/status) and live
// GStreamer elements (/metrics) before and after. Prints one line
// `LEAK {json}`; the Rust test asserts on it.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import { CHROMIUM_ARGS } from './video-common.mjs';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing env ${k}`); return v; };
const GS = env('GS_URL'), PW = env('PASSWORD'), DRONE = env('DRONE_ID'), PID = env('GS_PID');
const ROUNDS = Number(process.env.ROUNDS || 100), FULL = Number(process.env.FULL || 10);
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

function proc() {
  const s = fs.readFileSync(`/proc/${PID}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1]);
  return { rss_kb: kb('VmRSS'), threads: kb('Threads') };
}
async function metrics() {
  const t = await (await fetch(GS + '/metrics')).text();
  const g = (name) => Number((new RegExp(`^${name} (\\S+)$`, 'm').exec(t) || [])[1]);
  return { elements: g('tiancha_video_gst_elements'), viewers: g('tiancha_video_viewers'), running: Number((new RegExp(`^tiancha_video_source_running\\{drone="${DRONE}"\\} (\\S+)$`, 'm').exec(t) || [])[1]) };
}
// Settled: no viewer, source stopped, element count stable; and, given
// `threads`, up to 30 s more for the thread count to come down to it
// (pool threads that outlive a busy spell on a loaded machine exit on
// their own; a leak of one thread per viewer never comes down).
async function settled(threads = Infinity) {
  let m = await metrics();
  for (let i = 0; i < 100 && (m.viewers !== 0 || m.running !== 0); i++) { await new Promise((r) => setTimeout(r, 200)); m = await metrics(); }
  // Idle threads of tokio's blocking pool (the store's calls) exit after
  // 10 s of idleness: wait past that, so the thread count measures leaks,
  // not how busy the last seconds were.
  await new Promise((r) => setTimeout(r, 11000));
  for (let i = 0; i < 30 && proc().threads > threads; i++) await new Promise((r) => setTimeout(r, 1000));
  m = await metrics();
  return { ...m, ...proc() };
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
const page = await (await browser.newContext()).newPage();
await page.goto(GS + '/?video=mjpeg');
await page.fill('#login-name', 'op1');
await page.fill('#login-password', PW);
await page.click('#login-submit');
await page.waitForSelector('#live-state.on', { timeout: 30000 });
// The panel starts a viewer after login: let it, then stop it.
await page.waitForFunction(() => window.tianchaVideo.mode === 'mjpeg', null, { timeout: 30000 });
await page.evaluate(() => window.tianchaVideo.stop());

// In the page: one MJPEG viewer reads its first JPEG, then aborts.
const mjpegOnce = async (drone) => {
  const ac = new AbortController();
  const r = await fetch(`/api/drones/${drone}/video.mjpeg`, { signal: ac.signal });
  if (r.status !== 200) throw new Error('MJPEG ' + r.status);
  const rd = r.body.getReader(); let n = 0;
  while (n < 2000) { const { value, done } = await rd.read(); if (done) break; n += value.length; }
  ac.abort();
  return n;
};
// One signalling session: wait for the station's offer, then close.
const offerOnce = (drone) => new Promise((ok, fail) => {
  const s = new WebSocket(`ws://${location.host}/api/drones/${drone}/video/webrtc`);
  const t = setTimeout(() => { s.close(); fail(new Error('no offer in 15 s')); }, 15000);
  s.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'offer') { clearTimeout(t); s.close(); ok(m.sdp.length); } };
  s.onerror = () => { clearTimeout(t); fail(new Error('socket error')); };
});
// One complete WebRTC session: frames decoded, then everything closed.
const fullOnce = (drone) => new Promise((ok, fail) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const s = new WebSocket(`ws://${location.host}/api/drones/${drone}/video/webrtc`);
  const v = document.createElement('video'); v.muted = true; v.autoplay = true;
  const t = setTimeout(() => { done(); fail(new Error('no frames in 20 s')); }, 20000);
  const done = () => { clearTimeout(t); s.close(); pc.close(); v.srcObject = null; };
  pc.ontrack = (e) => { v.srcObject = e.streams[0]; v.play().catch(() => {}); v.requestVideoFrameCallback(() => { done(); ok(true); }); };
  pc.onicecandidate = (e) => { if (e.candidate && e.candidate.candidate) s.send(JSON.stringify({ type: 'candidate', candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex })); };
  s.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    if (m.type === 'offer') { await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp }); const a = await pc.createAnswer(); await pc.setLocalDescription(a); s.send(JSON.stringify({ type: 'answer', sdp: a.sdp })); }
    else if (m.type === 'candidate') await pc.addIceCandidate({ candidate: m.candidate, sdpMLineIndex: m.sdpMLineIndex }).catch(() => {});
  };
});
const run = (fn, n) => page.evaluate(`(async () => { const f = (${fn.toString()}); for (let i = 0; i < ${n}; i++) await f(${JSON.stringify(DRONE)}); return ${n}; })()`);

// Warm up (plugins loaded, thread pools made), then measure.
await run(mjpegOnce, 2); await run(offerOnce, 2); await run(fullOnce, 1);
const before = await settled();
log('before', JSON.stringify(before));
const t0 = Date.now();
await run(mjpegOnce, ROUNDS);
log(`${ROUNDS} MJPEG viewers in ${((Date.now() - t0) / 1000).toFixed(1)} s`, JSON.stringify(proc()));
const t1 = Date.now();
await run(offerOnce, ROUNDS);
log(`${ROUNDS} WebRTC signalling sessions in ${((Date.now() - t1) / 1000).toFixed(1)} s`, JSON.stringify(proc()));
const t2 = Date.now();
await run(fullOnce, FULL);
log(`${FULL} complete WebRTC sessions in ${((Date.now() - t2) / 1000).toFixed(1)} s`);
const after = await settled(before.threads + 25);
log('after', JSON.stringify(after));
console.log('LEAK ' + JSON.stringify({ rounds: ROUNDS, full: FULL, before, after }));
await browser.close();
