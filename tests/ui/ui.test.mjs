// Browser test of the ground station's web UI in real headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core). Run by
// cli/tests/ui_browser.rs, which starts the ground station (embedded
// broker), the users and a drone test double, and passes:
//   GS_URL, MQTT_PORT, RECEIVER_PORT, ROUTE_SECRET, PASSWORD, DRONE_ID,
//   SCREENSHOT_DIR (optional: where to write map/feed/case-desk PNGs).
//
// This file is also the test's dispute system: an HTTP server that checks
// each case's HMAC-SHA256 signature with Node's own crypto (an independent
// implementation of the signing scheme) and records cases by
// Idempotency-Key, and that signs the status callback it sends back.
import { chromium } from 'playwright-core';
import http from 'node:http';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import assert from 'node:assert/strict';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`missing env ${k}`); return v; };
const GS = env('GS_URL'), MQTT_PORT = env('MQTT_PORT'), RPORT = Number(env('RECEIVER_PORT'));
const SECRET = env('ROUTE_SECRET'), PW = env('PASSWORD'), DRONE = env('DRONE_ID');
const SHOTS = process.env.SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'tiancha-shots-'));
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

// ---------------------------------------------------------------- the test's dispute system
const received = new Map(); // idempotency key -> {count, body, sigOk}
const requests = [];
function verify(header, body) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header || '');
  if (!m) return false;
  const mac = crypto.createHmac('sha256', SECRET).update(m[1] + '.').update(body).digest('hex');
  return crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(m[2])) && Math.abs(Date.now() / 1000 - Number(m[1])) < 300;
}
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const key = req.headers['idempotency-key'];
    const sigOk = verify(req.headers['x-tiancha-signature'], body);
    requests.push({ key, sigOk, url: req.url });
    if (!sigOk) { res.writeHead(401); res.end('bad signature'); return; }
    const c = JSON.parse(body.toString('utf8'));
    if (c.case_id !== key) { res.writeHead(422); res.end('key mismatch'); return; }
    const r = received.get(key);
    if (r) { r.count++; res.writeHead(200); res.end('{"status":"duplicate"}'); return; }
    received.set(key, { count: 1, body: c, sigOk });
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end('{"status":"created"}');
  });
});
await new Promise((ok) => server.listen(RPORT, '127.0.0.1', ok));

async function callback(caseId, status, note) {
  const body = JSON.stringify({ schema: 1, case_id: caseId, status, t_unix_ms: Date.now(), handler: 'Wang (Shaxi mediation)', note });
  const t = Math.floor(Date.now() / 1000);
  const sig = crypto.createHmac('sha256', SECRET).update(t + '.').update(body).digest('hex');
  const r = await fetch(`${GS}/api/callbacks/governance`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-tiancha-signature': `t=${t},v1=${sig}` }, body });
  assert.equal(r.status, 200, await r.text());
}

// ---------------------------------------------------------------- helpers
function publishAlert(alert) {
  const f = path.join(os.tmpdir(), `alert-${alert.alert_id}.json`);
  fs.writeFileSync(f, JSON.stringify(alert));
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', MQTT_PORT, '-q', '1', '-t', `tiancha/v1/drones/${DRONE}/alerts`, '-f', f]);
}
// A real JPEG: the first frame of OpenCV's vtest.avi sample (people seen
// from above), 192x144, made with GStreamer (see tests/ui/README.md).
const JPEG = fs.readFileSync(new URL('./snapshot.jpg', import.meta.url)).toString('base64');
function uuidv7() {
  const b = crypto.randomBytes(16); const t = BigInt(Date.now());
  for (let i = 0; i < 6; i++) b[i] = Number((t >> BigInt(8 * (5 - i))) & 0xffn);
  b[6] = (b[6] & 0x0f) | 0x70; b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex'); return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
function gathering(n, lat, lon) {
  const t = Date.now();
  return { schema: 1, alert_id: uuidv7(), drone_id: DRONE, category: 'gathering', confidence: 0.91, t_first_unix_ms: t - 150000, t_unix_ms: t,
    location_status: 'geotagged', location: { lat_deg: lat, lon_deg: lon, sigma: { semi_major_m: 6, semi_minor_m: 3, orientation_deg: 40 } },
    observer: { lat_deg: lat - 0.0006, lon_deg: lon - 0.0004, alt_m: 130 }, person_count: n, extent_m: 14,
    tracks: [{ track_id: 7, class: 'person', path: [{ lat_deg: lat - 0.0001, lon_deg: lon - 0.0001 }, { lat_deg: lat, lon_deg: lon }] }],
    rule: { name: 'gathering', detail: `${n} people within 15 m for 150 s (threshold 8 people, 60 s)` }, zone: 'market square',
    snapshot: { width: 192, height: 144, jpeg: JPEG } };
}
async function waitFor(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------- the browser
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => { errors.push('unexpected dialog: ' + d.message()); d.dismiss(); });

  // 1. Log in as operator (a wrong password first: the form says so).
  await page.goto(GS + '/');
  await page.fill('#login-name', 'op1');
  await page.fill('#login-password', 'wrong password!');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  assert.match(await page.textContent('#login-error'), /wrong user name or password/);
  await page.fill('#login-password', PW);
  await page.click('#login-submit');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#live-state.on');
  await page.waitForSelector(`[data-drone-marker="${DRONE}"]`, { timeout: 10000 });
  log('logged in as operator; live feed connected; drone on the map');
  // The autopilot's readiness and where RTL goes, in the drone's words.
  await page.waitForSelector('#drones [data-readiness="not-ready"]', { timeout: 10000 });
  assert.match(await page.textContent('#drones [data-readiness]'), /not ready: .*PreArm: Need Position Estimate/);
  assert.match(await page.textContent('#drones [data-rtl]'), /RTL → rally point 2/);

  // 2. An alert published over MQTT appears on the feed and the map within 1 s.
  const a = gathering(12, 28.4496, 117.9418);
  const t0 = Date.now();
  publishAlert(a);
  await page.waitForSelector(`#feed li[data-alert-id="${a.alert_id}"]`, { timeout: 5000 });
  await page.waitForSelector(`[data-alert-marker="${a.alert_id}"]`, { timeout: 5000 });
  const seenAt = await page.evaluate((id) => window.tiancha.alertSeenAt.get(id), a.alert_id);
  const latency = seenAt - t0;
  log(`alert on feed and map ${latency} ms after mosquitto_pub started`);
  assert.ok(latency < 1000, `alert took ${latency} ms to reach the feed and map (limit 1000)`);
  const feedText = await page.textContent(`#feed li[data-alert-id="${a.alert_id}"]`);
  assert.match(feedText, /12 people/); assert.match(feedText, /Xiajia/); assert.match(feedText, /91%/);

  // A second alert of a different category for the screenshot.
  const fire = { ...gathering(0, 28.4532, 117.9480), category: 'smoke', person_count: null, alert_id: uuidv7(), rule: { name: 'hazard', detail: 'smoke in 4 of 5 frames' }, zone: null };
  publishAlert(fire);
  await page.waitForSelector(`#feed li[data-alert-id="${fire.alert_id}"]`, { timeout: 5000 });

  // 3. Alert detail, then confirm → a case.
  await page.click(`#feed li[data-alert-id="${a.alert_id}"]`);
  await page.waitForFunction(() => /12 people/.test(document.querySelector('#detail-title').textContent));
  assert.match(await page.textContent('#detail-rule'), /12 people within 15 m/);
  await page.screenshot({ path: path.join(SHOTS, 'map.png') });
  await page.locator('aside.side').screenshot({ path: path.join(SHOTS, 'feed.png') });
  await page.click('#btn-confirm');
  await page.waitForFunction(() => /^Case /.test(document.querySelector('#triage-msg').textContent));
  log('confirmed:', await page.textContent('#triage-msg'));

  // 4. The test's dispute system gets the case exactly once, validly signed.
  const [key, got] = await waitFor('the case at the dispute system', () => (received.size ? [...received.entries()][0] : null));
  await new Promise((r) => setTimeout(r, 1500)); // room for a (wrong) second delivery
  assert.equal(received.size, 1, 'one case');
  assert.equal(got.count, 1, 'delivered exactly once');
  assert.ok(got.sigOk, 'valid HMAC signature');
  assert.ok(requests.every((r) => r.sigOk), 'every request signed');
  assert.deepEqual(got.body.alert_ids, [a.alert_id]);
  assert.equal(got.body.source, 'drone');
  assert.equal(got.body.category, 'gathering');
  assert.equal(got.body.route, 'governance');
  assert.equal(got.body.grid.village, 'Xiajia');
  assert.equal(got.body.confirmed_by, 'op1');
  assert.equal(got.body.evidence.length, 1);
  const ev = await fetch(got.body.evidence[0].url);
  assert.equal(ev.status, 200, 'the signed evidence link works from the dispute system');
  assert.equal(crypto.createHash('sha256').update(Buffer.from(await ev.arrayBuffer())).digest('hex'), got.body.evidence[0].sha256);
  log('case', key, 'received once, signature valid, evidence fetched and hash checked');

  // 5. Command a drone and see its result (the drone double answers).
  await page.click(`#drones button[data-cmd="pause"][data-drone="${DRONE}"]`);
  await page.waitForSelector('#command-log li[data-status="succeeded"]', { timeout: 10000 });
  log('pause →', await page.textContent('#command-log li[data-status="succeeded"]'));

  // 6. Mission preview on a saved area, then launch.
  await page.selectOption('#mission-area', { label: 'Xiajia village' });
  await page.selectOption('#mission-drone', DRONE);
  await page.click('#btn-preview');
  await page.waitForFunction(() => /sortie/.test(document.querySelector('#mission-msg').textContent), null, { timeout: 60000 });
  log('preview:', await page.textContent('#mission-msg'));
  await page.click('#btn-launch');
  await page.waitForFunction(() => [...document.querySelectorAll('#command-log li')].some((l) => /launch patrol → succeeded/.test(l.textContent)), null, { timeout: 10000 });
  await page.screenshot({ path: path.join(SHOTS, 'mission.png') });

  // 7. The dispute system reports back: the timeline shows it.
  await page.click('button[data-view="cases"]');
  await page.click(`#cases-table tr[data-case-id="${key}"]`);
  await page.waitForSelector('#case-timeline li[data-status="dispatched"]', { timeout: 10000 });
  await callback(key, 'received', 'Registered as 2024-SX-0193');
  await page.waitForSelector('#case-timeline li[data-status="received"]', { timeout: 5000 });
  const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> \'; DROP TABLE cases; --';
  await callback(key, 'mediating', evil);
  await page.waitForSelector('#case-timeline li[data-status="mediating"]', { timeout: 5000 });
  const tl = await page.textContent('#case-timeline');
  assert.ok(tl.includes(evil), 'the note is shown as text');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no markup from a note ran');
  assert.equal(await page.locator('#case-timeline img').count(), 0);
  // Wait for the case map tiles-less vector layer to settle, then shoot.
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(SHOTS, 'case-desk.png') });
  log('timeline:', (await page.locator('#case-timeline li').allTextContents()).join(' | '));

  // 8. A dispute-centre user sees the case but cannot launch a mission.
  const ctx2 = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const p2 = await ctx2.newPage();
  p2.on('pageerror', (e) => errors.push(String(e)));
  await p2.goto(GS + '/');
  await p2.fill('#login-name', 'centre1');
  await p2.fill('#login-password', PW);
  await p2.click('#login-submit');
  await p2.waitForSelector(`#cases-table tr[data-case-id="${key}"]`);
  assert.ok(await p2.isVisible('#view-cases'), 'dispute centre lands on the case desk');
  await p2.click(`#cases-table tr[data-case-id="${key}"]`);
  await p2.waitForSelector('#case-timeline li[data-status="mediating"]');
  await p2.click('button[data-view="ops"]');
  assert.equal(await p2.isVisible('#mission-panel'), false, 'no mission panel for the dispute centre');
  assert.equal(await p2.isVisible('#triage'), false, 'no triage for the dispute centre');
  assert.equal(await p2.locator('#drones button[data-cmd]').count(), 0, 'no command buttons');
  const refused = await p2.evaluate(async (drone) => {
    const s = await (await fetch('/api/session')).json();
    const r = await fetch(`/api/drones/${drone}/commands`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf },
      body: JSON.stringify({ command: 'launch_patrol', patrol: { areas: [{ exterior: [{ lat_deg: 28.45, lon_deg: 117.94 }, { lat_deg: 28.45, lon_deg: 117.941 }, { lat_deg: 28.451, lon_deg: 117.941 }] }] } }) });
    return [r.status, await r.text()];
  }, DRONE);
  assert.equal(refused[0], 403, refused[1]);
  log('dispute centre: case visible, launch refused by the API:', refused[1]);

  assert.deepEqual(errors, [], 'no page errors');
  await ctx2.close();
  await ctx.close();
  log('screenshots in', SHOTS);
} catch (e) {
  failed = true;
  console.error('FAILED:', e && e.stack || e);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
