// Browser side of the live-feed benchmark (ground-station/benches/live.rs):
// PAGES headless Chromium pages run the real UI, logged in as an operator.
// Prints READY when every page's live feed is connected; on a line DONE on
// standard input, prints one JSON line: for each page, [alert_id, ms since
// epoch when the page had rendered it] (window.tiancha.alertSeenAt).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const GS = process.env.GS_URL, USER = process.env.GS_USER, PW = process.env.GS_PASSWORD;
const PAGES = Number(process.env.PAGES || 3);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const pages = [];
for (let i = 0; i < PAGES; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await ctx.newPage();
  await p.goto(GS + '/');
  await p.fill('#login-name', USER);
  await p.fill('#login-password', PW);
  await p.click('#login-submit');
  await p.waitForSelector('#live-state.on', { timeout: 30000 });
  pages.push(p);
}
console.log('READY');
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (line.trim() !== 'DONE') continue;
  const out = [];
  for (const p of pages) out.push(await p.evaluate(() => [...window.tiancha.alertSeenAt.entries()]));
  console.log(JSON.stringify(out));
  break;
}
await browser.close();
process.exit(0);
