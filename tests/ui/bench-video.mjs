// Glass-to-glass latency of the ground station's live video (a bench, not
// a test): the simulator renders its camera with the capture time burned
// into each frame (sim::camera::timestamp), streams it as RTSP/H.264; the
// real ground station pulls it and serves it to headless Chromium over
// WebRTC (H.264 passed through) and over the MJPEG fallback. In the page,
// each new frame is drawn to a canvas, the burned-in time read back
// (window.tianchaVideo.readTimestamp, a port of read_timestamp) and
// compared with Date.now() on the same machine.
//
//   TIANCHA_BIN=target/debug/tiancha node tests/ui/bench-video.mjs
// or against a running station (GS_URL, GS_USER, GS_PASSWORD; the
// ground-station bench `cargo bench -p tiancha-ground-station --bench
// video_latency` starts one with a test camera and runs this).
//   env: STATS=1 (log the browser's inbound-rtp statistics every 2 s), MODES (default webrtc,mjpeg), SAMPLES (per transport per round, default 100), ROUNDS (default 2),
//        FPS (camera, default 10)
// Prints a table and one `RESULT {json}` line.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHROMIUM_ARGS } from './video-common.mjs';

const BIN = process.env.TIANCHA_BIN || path.resolve('../../target/debug/tiancha');
const SAMPLES = Number(process.env.SAMPLES || 100), ROUNDS = Number(process.env.ROUNDS || 2), FPS = process.env.FPS || '10';
const PW = 'bench password 123';
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const log = (...a) => console.error(new Date().toISOString().slice(11, 23), ...a);
const freePort = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitPort(port, ms = 30000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); });
    if (ok) return; await sleep(200);
  }
  throw new Error(`port ${port} not open`);
}

const kids = [];
const cleanup = () => { for (const k of kids) try { k.kill('SIGKILL'); } catch (_) { /* gone */ } };
process.on('exit', cleanup);
try {
  let GS = process.env.GS_URL, USER = process.env.GS_USER || 'op1', PWD = process.env.GS_PASSWORD || PW;
  if (!GS) {
    // Our own simulator camera and ground station.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tiancha-bench-video-'));
    const [http, mqtt, rtsp, mav] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const run = (name, args) => { const out = fs.openSync(path.join(dir, name + '.log'), 'a'); const k = spawn(BIN, args, { stdio: ['ignore', out, out] }); kids.push(k); return k; };
    run('sim', ['sim', '--listen', `udpin:127.0.0.1:${mav}`, '--camera-scenario', path.join(ROOT, 'examples/shangrao/scenario.toml'), '--camera-rtsp-port', String(rtsp), '--camera-fps', FPS]);
    await waitPort(rtsp);
    const conf = path.join(dir, 'gs.toml');
    fs.writeFileSync(conf, `data_dir = "${dir}/gs-data"\ninstance = "bench-video"\n[http]\nlisten = "127.0.0.1:${http}"\n[mqtt]\nport = ${mqtt}\n[broker]\nlisten = "127.0.0.1:${mqtt}"\n[video.drones."sim-1"]\nurl = "rtsp://127.0.0.1:${rtsp}/camera"\nrecord = false\n`);
    execFileSync(BIN, ['ground-station', '--config', conf, 'user', 'add', 'op1', '--role', 'operator', '--password-env', 'PW'], { env: { ...process.env, PW } });
    run('ground-station', ['ground-station', '--config', conf]);
    await waitPort(http);
    GS = `http://localhost:${http}`;
  }

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 860 } });
  const page = await ctx.newPage();
  await page.goto(GS + '/');
  await page.fill('#login-name', USER);
  await page.fill('#login-password', PWD);
  await page.click('#login-submit');
  await page.waitForSelector('#live-state.on', { timeout: 30000 });

  // In the page: N samples of (Date.now() - burned-in time), one per new frame.
  const sample = (mode, n) => new Promise((ok, fail) => {
    const V = window.tianchaVideo, el = document.getElementById(mode === 'webrtc' ? 'video' : 'video-mjpeg');
    const c = document.createElement('canvas'); const ctx = c.getContext('2d', { willReadFrequently: true });
    const out = []; let last = null, misreads = 0;
    const t = setTimeout(() => fail(new Error(`${mode}: only ${out.length} samples in 120 s`)), 120000);
    const read = () => {
      const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight;
      if (!w) return;
      if (c.width !== w) { c.width = w; c.height = h; }
      ctx.drawImage(el, 0, 0, w, h);
      const ts = V.readTimestamp(ctx, w), now = Date.now();
      if (ts === null) { misreads++; return; }
      if (ts !== last) { last = ts; out.push(now - ts); }
      if (out.length >= n) { clearTimeout(t); ok({ samples: out, misreads }); return true; }
    };
    // Polled every 5 ms for both transports (a new burned-in time = a new frame shown).
    const iv = setInterval(() => { if (read()) clearInterval(iv); }, 5);
  });
  // STATS=1: every 2 s, the browser's inbound video statistics.
  const statsTimer = process.env.STATS && setInterval(async () => {
    const st = await page.evaluate(async () => {
      const pc = window.tianchaVideo.pc; if (!pc) return null;
      const out = {};
      (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') Object.assign(out, { recv: r.packetsReceived, lost: r.packetsLost, dec: r.framesDecoded, drop: r.framesDropped, key: r.keyFramesDecoded, frz: r.freezeCount, pli: r.pliCount, nack: r.nackCount, jb: r.jitterBufferDelay && r.jitterBufferEmittedCount ? Math.round(1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount) : null }); if (r.type === 'candidate-pair' && r.nominated) out.pair = r.state; });
      out.shown = window.tianchaVideo.frames; out.state = pc.connectionState;
      return out;
    }).catch((e) => String(e));
    log('stats', JSON.stringify(st));
  }, 2000);
  const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]; };
  const res = { webrtc: [], mjpeg: [], misreads: { webrtc: 0, mjpeg: 0 } };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of (process.env.MODES || 'webrtc,mjpeg').split(',')) {
      await page.selectOption('#video-mode', mode);
      await page.waitForFunction((m) => window.tianchaVideo.mode === m && window.tianchaVideo.frames > 5 || (m === 'mjpeg' && window.tianchaVideo.mode === m && document.getElementById('video-mjpeg').naturalWidth > 0), mode, { timeout: 40000 });
      await sleep(2000); // past the start-up burst
      const s = await page.evaluate(`(${sample.toString()})(${JSON.stringify(mode)}, ${SAMPLES})`);
      res[mode].push(...s.samples); res.misreads[mode] += s.misreads;
      log(`round ${r + 1} ${mode}: ${s.samples.length} samples, p50 ${q(s.samples, 0.5)} ms, p95 ${q(s.samples, 0.95)} ms`);
    }
  }
  if (statsTimer) clearInterval(statsTimer);
  await browser.close();
  const summary = {};
  for (const m of ['webrtc', 'mjpeg']) {
    const xs = res[m];
    if (!xs.length) continue;
    summary[m] = { n: xs.length, p50_ms: q(xs, 0.5), p95_ms: q(xs, 0.95), min_ms: Math.min(...xs), max_ms: Math.max(...xs), misreads: res.misreads[m] };
  }
  console.log(`${process.env.GS_URL ? "the station at " + GS : "sim camera " + FPS + " fps 1280x720"}, ${ROUNDS} rounds x ${SAMPLES} samples per transport, loopback, ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log('transport  n    p50    p95    min    max  (ms, glass to glass)');
  for (const m of Object.keys(summary)) { const s = summary[m]; console.log(`${m.padEnd(9)} ${String(s.n).padStart(3)} ${String(s.p50_ms).padStart(6)} ${String(s.p95_ms).padStart(6)} ${String(s.min_ms).padStart(6)} ${String(s.max_ms).padStart(6)}`); }
  console.log('RESULT ' + JSON.stringify(summary));
} finally {
  cleanup();
}
