// tiancha ground station web UI. Plain JavaScript, no build step.
// Every piece of text from the server is put in the page with textContent
// (never innerHTML), so notes, names and titles cannot inject markup.
'use strict';

const T = {
  session: null,          // {user, role, csrf}
  map: null, layers: {}, drones: new Map(), alerts: new Map(), cases: new Map(),
  selectedAlert: null, selectedCase: null, commands: new Map(),
  draw: null, preview: null, previewLayer: null, ws: null, wsBackoff: 500,
  pendingAlerts: [], renderQueued: false,
};
// For tests and benchmarks: when each alert reached this page (ms since epoch).
window.tiancha = { alertSeenAt: new Map(), messages: 0 };

const CATEGORY = ['gathering', 'intrusion', 'fire', 'smoke', 'flood', 'traffic_accident', 'illegal_dumping', 'illegal_construction', 'road_damage', 'other_hazard'];
const STATUS = ['raised', 'confirmed', 'dispatched', 'received', 'mediating', 'resolved', 'closed', 'rejected'];
const PRIORITY = ['urgent', 'high', 'normal', 'low'];
const COLORS = { gathering: '#9b3bd1', intrusion: '#d13b9b', fire: '#e33', smoke: '#999', flood: '#36c', traffic_accident: '#f80', illegal_dumping: '#7a5', illegal_construction: '#a74', road_damage: '#777', other_hazard: '#555' };

// ------------------------------------------------------------ helpers
function $(id) { return document.getElementById(id); }
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
function label(s) { return String(s || '').replace(/_/g, ' '); }
function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago'; if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago'; return Math.round(s / 86400) + ' d ago';
}
function when(ms) { return new Date(ms).toLocaleString(); }
function place(a) {
  const g = a.grid;
  if (g && g.village) return g.village + ' · ' + g.grid_id;
  if (g) return g.grid_id;
  const l = a.location || a.observer;
  return l ? l.lat_deg.toFixed(5) + ', ' + l.lon_deg.toFixed(5) : 'position unknown';
}
async function api(method, path, body) {
  const opt = { method, headers: {}, credentials: 'same-origin' };
  if (T.session && T.session.csrf && method !== 'GET') opt.headers['X-CSRF-Token'] = T.session.csrf;
  if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
  const r = await fetch(path, opt);
  const text = await r.text();
  let data = null; try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/login' && path !== '/api/session') showLogin();
    const err = new Error((data && data.error) || ('HTTP ' + r.status)); err.status = r.status; throw err;
  }
  return data;
}
function can(role) { return T.session && role.split(' ').includes(T.session.role); }
function applyRoles() {
  for (const e of document.querySelectorAll('[data-roles]')) e.hidden = !can(e.dataset.roles);
}

// ------------------------------------------------------------ login
function showLogin() {
  if (window.tianchaVideo) window.tianchaVideo.stop();
  T.session = null; if (T.ws) { T.ws.onclose = null; T.ws.close(); T.ws = null; }
  $('app').hidden = true; $('login').hidden = false; $('login-name').focus();
}
$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault(); $('login-error').textContent = '';
  try {
    T.session = await api('POST', '/api/login', { name: $('login-name').value, password: $('login-password').value });
    $('login-password').value = '';
    await start();
  } catch (e) { $('login-error').textContent = e.message; }
});
$('logout').addEventListener('click', async () => { try { await api('POST', '/api/logout'); } catch (_) {} location.reload(); });

// ------------------------------------------------------------ views
function show(view) {
  for (const v of ['ops', 'cases', 'dispatch', 'admin']) $('view-' + v).hidden = v !== view;
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === view);
  if (view === 'ops' && T.map) setTimeout(() => T.map.invalidateSize(), 0);
  if (view === 'cases') loadCases();
  if (view === 'dispatch') loadOutbox();
  if (view === 'admin') loadAdmin();
  history.replaceState(null, '', '#' + view);
}
for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => show(b.dataset.view));

async function start() {
  $('login').hidden = true; $('app').hidden = false;
  $('whoami').textContent = T.session.user + ' (' + label(T.session.role) + ')';
  applyRoles();
  await initMap();
  await Promise.all([loadAlerts(), loadDrones(), loadCases(), loadCommands()]);
  connectLive();
  if (window.tianchaVideo) window.tianchaVideo.start(T.session);
  const want = location.hash.slice(1);
  show(['ops', 'cases', 'dispatch', 'admin'].includes(want) ? want : (T.session.role === 'dispute_centre' ? 'cases' : 'ops'));
}

// ------------------------------------------------------------ map
function ellipse(lat, lon, a, b, rotDeg) {
  // 1-sigma ellipse in metres → lat/lon ring (local flat approximation).
  const pts = [], r = rotDeg * Math.PI / 180, mLat = 111320, mLon = 111320 * Math.cos(lat * Math.PI / 180);
  for (let i = 0; i < 36; i++) {
    const t = i / 36 * 2 * Math.PI, x = a * Math.cos(t), y = b * Math.sin(t);
    const north = x * Math.cos(r) - y * Math.sin(r), east = x * Math.sin(r) + y * Math.cos(r);
    pts.push([lat + north / mLat, lon + east / mLon]);
  }
  return pts;
}
function featureStyle(kind) {
  return ({
    area: { color: '#2a8a3a', weight: 2, fillOpacity: 0.08 },
    grid: { color: '#2266aa', weight: 1, dashArray: '4 4', fillOpacity: 0.03 },
    no_fly_zone: { color: '#d22', weight: 2, fillColor: '#d22', fillOpacity: 0.25 },
    danger_zone: { color: '#e80', weight: 2, fillColor: '#e80', fillOpacity: 0.2 },
    sensitive_site: { color: '#80c', weight: 2, fillOpacity: 0.12 },
  })[kind] || { color: '#555', weight: 1, fillOpacity: 0.1 };
}
async function initMap() {
  if (T.map) return;
  const m = await api('GET', '/api/map');
  T.mapConfig = m;
  T.map = L.map('map', { zoomControl: true, preferCanvas: false }).setView(m.center, m.zoom);
  if (m.tiles) L.tileLayer(m.tiles.url, { maxZoom: m.tiles.max_zoom, attribution: m.tiles.attribution }).addTo(T.map);
  T.layers.base = L.geoJSON(m.layers, {
    style: (f) => featureStyle(f.properties && f.properties.kind),
    pointToLayer: (f, ll) => {
      const p = f.properties || {};
      if (p.radius_m) return L.circle(ll, { radius: p.radius_m, ...featureStyle(p.kind) });
      return L.circleMarker(ll, { radius: 5, color: '#246', fillColor: '#fc3', fillOpacity: 0.9, weight: 1 });
    },
    onEachFeature: (f, layer) => {
      const p = f.properties || {};
      const name = p.village ? p.village + ' (' + p.grid_id + ')' : (p.name || p.kind || '');
      if (name) layer.bindTooltip(name, { sticky: p.kind !== 'grid', permanent: p.kind === 'grid', direction: 'center', className: p.kind === 'grid' ? 'grid-label' : '' });
      const buf = p.kind === 'no_fly_zone' && p.buffer_m && f.geometry.type === 'Point';
      if (buf) L.circle([f.geometry.coordinates[1], f.geometry.coordinates[0]], { radius: p.radius_m + p.buffer_m, color: '#d22', weight: 1, dashArray: '3 5', fill: false }).addTo(T.map);
    },
  }).addTo(T.map);
  T.layers.alerts = L.layerGroup().addTo(T.map);
  T.layers.drones = L.layerGroup().addTo(T.map);
  T.layers.tracks = L.layerGroup().addTo(T.map);
  T.layers.routes = L.layerGroup().addTo(T.map);
  T.layers.selection = L.layerGroup().addTo(T.map);
  fillAreaPicker();
  T.map.on('click', (ev) => {
    if (!T.draw) return;
    T.draw.points.push([ev.latlng.lat, ev.latlng.lng]);
    T.draw.layer.setLatLngs(T.draw.points);
  });
}

// ------------------------------------------------------------ alerts: feed + map
function addAlert(a, live) {
  const existing = T.alerts.get(a.alert_id);
  T.alerts.set(a.alert_id, Object.assign(existing || {}, a));
  if (live) {
    T.pendingAlerts.push(a.alert_id);
    if (!T.renderQueued) { T.renderQueued = true; requestAnimationFrame(flushAlerts); }
  }
}
function flushAlerts() {
  T.renderQueued = false;
  const ids = T.pendingAlerts.splice(0);
  const feed = $('feed');
  for (const id of ids) {
    const a = T.alerts.get(id);
    const old = feed.querySelector('[data-alert-id="' + id + '"]');
    const li = feedItem(a);
    if (old) old.replaceWith(li); else feed.prepend(li);
    alertMarker(a);
  }
  while (feed.children.length > 200) feed.lastChild.remove();
  $('feed-count').textContent = '(' + T.alerts.size + ')';
  const now = Date.now();
  for (const id of ids) if (window.tiancha.alertSeenAt.size < 200000 && !window.tiancha.alertSeenAt.has(id)) window.tiancha.alertSeenAt.set(id, now);
}
function feedItem(a) {
  const thumb = a.snapshot_url ? h('img', { class: 'thumb', src: a.snapshot_url, alt: '', loading: 'lazy' }) : h('span', { class: 'thumb none' });
  const what = label(a.category) + (a.person_count ? ' · ' + a.person_count + ' people' : '');
  return h('li', { dataset: { alertId: a.alert_id, t: a.t_unix_ms }, class: 'triage-' + (a.triage || 'new') + (T.selectedAlert === a.alert_id ? ' selected' : ''), onclick: () => selectAlert(a.alert_id) },
    thumb,
    h('div', {},
      h('div', { class: 'what' }, h('span', { class: 'badge cat-' + a.category }, label(a.category)), what),
      h('div', { class: 'meta' }, place(a)),
      h('div', { class: 'meta' }, Math.round(a.confidence * 100) + '% · drone ' + a.drone_id + ' · ', h('span', { class: 'age', dataset: { t: a.t_unix_ms } }, age(a.t_unix_ms)),
        a.triage && a.triage !== 'new' ? ' · ' + a.triage : '')));
}
function alertMarker(a) {
  if (!T.map || !a.location) return;
  if (a._marker) T.layers.alerts.removeLayer(a._marker);
  const g = a.location, color = COLORS[a.category] || '#333';
  const grp = L.featureGroup([
    L.polygon(ellipse(g.lat_deg, g.lon_deg, Math.max(g.sigma.semi_major_m, 1), Math.max(g.sigma.semi_minor_m, 1), g.sigma.orientation_deg), { color, weight: 1, fillOpacity: 0.15 }),
    L.circleMarker([g.lat_deg, g.lon_deg], { radius: 7, color: '#fff', weight: 2, fillColor: color, fillOpacity: a.triage === 'dismissed' ? 0.3 : 0.95 }),
  ]);
  grp.on('click', () => selectAlert(a.alert_id));
  grp.bindTooltip(label(a.category) + (a.person_count ? ' (' + a.person_count + ')' : ''));
  grp.addTo(T.layers.alerts);
  grp.getLayers()[1].getElement && grp.getLayers()[1].getElement() && grp.getLayers()[1].getElement().setAttribute('data-alert-marker', a.alert_id);
  a._marker = grp;
  const markers = T.layers.alerts.getLayers();
  if (markers.length > 500) T.layers.alerts.removeLayer(markers[0]);
}
async function loadAlerts() {
  const rows = await api('GET', '/api/alerts?limit=200');
  clear($('feed'));
  for (const r of rows.reverse()) {
    const a = { alert_id: r.alert_id, drone_id: r.drone_id, category: r.category, confidence: r.confidence, t_unix_ms: r.t_unix_ms,
      person_count: r.person_count, grid: r.grid, snapshot_url: r.snapshot_url, triage: r.triage, case_id: r.case_id,
      location: r.lat_deg !== null ? { lat_deg: r.lat_deg, lon_deg: r.lon_deg, sigma: { semi_major_m: 5, semi_minor_m: 5, orientation_deg: 0 } } : null };
    addAlert(a, true);
  }
}
async function selectAlert(id) {
  T.selectedAlert = id;
  for (const li of document.querySelectorAll('#feed li')) li.classList.toggle('selected', li.dataset.alertId === id);
  const a = await api('GET', '/api/alerts/' + id);
  Object.assign(T.alerts.get(id) || {}, { triage: a.triage, case_id: a.case_id });
  $('detail-panel').hidden = false;
  $('detail-title').textContent = label(a.category) + (a.person_count ? ' · ' + a.person_count + ' people' : '');
  const img = $('detail-snapshot'); img.hidden = !a.snapshot_url; if (a.snapshot_url) img.src = a.snapshot_url;
  const facts = clear($('detail-facts'));
  const add = (k, v) => facts.append(h('dt', {}, k), h('dd', {}, v));
  add('Place', place(a));
  add('Confidence', Math.round(a.confidence * 100) + '%');
  add('Drone', a.drone_id);
  add('Seen', when(a.t_first_unix_ms) + ' → ' + when(a.t_unix_ms));
  if (a.location) add('Position', a.location.lat_deg.toFixed(6) + ', ' + a.location.lon_deg.toFixed(6) + ' (±' + a.location.sigma.semi_major_m.toFixed(1) + ' × ' + a.location.sigma.semi_minor_m.toFixed(1) + ' m)');
  if (a.zone) add('Zone', a.zone);
  add('Triage', a.triage + (a.case_id ? ' → case ' + a.case_id.slice(0, 8) : ''));
  $('detail-rule').textContent = 'Rule ' + a.rule.name + (a.rule.detail ? ': ' + a.rule.detail : '');
  T.layers.selection.clearLayers();
  for (const tr of a.tracks || []) if (tr.path && tr.path.length > 1) L.polyline(tr.path.map((p) => [p.lat_deg, p.lon_deg]), { color: '#fff', weight: 2, dashArray: '2 4' }).addTo(T.layers.selection);
  if (a.location) {
    L.polygon(ellipse(a.location.lat_deg, a.location.lon_deg, a.location.sigma.semi_major_m, a.location.sigma.semi_minor_m, a.location.sigma.orientation_deg), { color: '#ff0', weight: 2, fill: false }).addTo(T.layers.selection);
    T.map.panTo([a.location.lat_deg, a.location.lon_deg]);
  }
  const sel = clear($('merge-case'));
  for (const c of [...T.cases.values()].filter((c) => c.category === a.category && !['resolved', 'closed', 'rejected'].includes(c.status)))
    sel.append(h('option', { value: c.case_id }, c.title + ' · ' + c.status));
  $('triage-msg').textContent = '';
}
$('detail-close').addEventListener('click', () => { $('detail-panel').hidden = true; T.selectedAlert = null; T.layers.selection.clearLayers(); });
async function triage(fn) {
  const id = T.selectedAlert; if (!id) return;
  // Reload the detail first (it clears the message), then say what happened.
  try { const msg = await fn(id); await selectAlert(id); $('triage-msg').textContent = msg; }
  catch (e) { $('triage-msg').textContent = 'Refused: ' + e.message; }
}
$('btn-confirm').addEventListener('click', () => triage(async (id) => { const r = await api('POST', '/api/alerts/' + id + '/confirm'); return 'Case ' + r.case_id.slice(0, 8) + ' (' + r.alerts.length + ' alert(s))'; }));
$('btn-dismiss').addEventListener('click', () => triage(async (id) => { await api('POST', '/api/alerts/' + id + '/dismiss', { reason: $('dismiss-reason').value }); $('dismiss-reason').value = ''; return 'Dismissed'; }));
$('btn-merge').addEventListener('click', () => triage(async (id) => { await api('POST', '/api/alerts/' + id + '/merge', { case_id: $('merge-case').value }); return 'Merged'; }));
$('btn-investigate').addEventListener('click', () => triage(async (id) => { const c = await api('POST', '/api/alerts/' + id + '/investigate', {}); trackCommand(c); return 'Investigate sent to ' + c.drone_id; }));

// ------------------------------------------------------------ drones and commands
async function loadDrones() {
  for (const d of await api('GET', '/api/drones')) {
    const s = T.drones.get(d.drone_id) || { id: d.drone_id, trail: [] };
    s.status = d.status; s.telemetry = d.telemetry; s.online = d.online;
    T.drones.set(d.drone_id, s);
    if (d.telemetry) drawDrone(s);
  }
  renderDrones();
}
function drawDrone(s) {
  const t = s.telemetry; if (!t || !T.map) return;
  const ll = [t.position.lat_deg, t.position.lon_deg];
  s.trail.push(ll); if (s.trail.length > 300) s.trail.shift();
  const icon = L.divIcon({ className: '', html: '', iconSize: [22, 22], iconAnchor: [11, 11] });
  if (!s.marker) {
    s.marker = L.marker(ll, { icon, title: s.id }).addTo(T.layers.drones);
    s.trailLine = L.polyline(s.trail, { color: '#0a6', weight: 2, opacity: 0.8 }).addTo(T.layers.tracks);
  } else { s.marker.setLatLng(ll); s.trailLine.setLatLngs(s.trail); }
  const el = s.marker.getElement();
  if (el) {
    if (!el.firstChild) el.append(h('div', { class: 'drone-icon', dataset: { droneMarker: s.id } }, '➤'));
    el.firstChild.style.transform = 'rotate(' + ((t.attitude.yaw_deg || 0) - 90) + 'deg)';
  }
  s.marker.bindTooltip(s.id + ' · ' + (t.mode || '') + (t.battery ? ' · ' + Math.round(t.battery.remaining_pct) + '%' : ''));
}
function renderDrones() {
  const ul = clear($('drones')), sel = $('mission-drone'), cur = sel.value;
  clear(sel);
  for (const s of [...T.drones.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    const t = s.telemetry || {}, st = s.status || {};
    const batt = t.battery ? Math.round(t.battery.remaining_pct) + '%' : (st.battery_pct !== undefined ? Math.round(st.battery_pct) + '%' : '?');
    const link = st.links ? 'ap ' + st.links.autopilot + ' · cam ' + st.links.camera + ' · ground ' + st.links.ground : '';
    const prog = t.mission ? ' · wp ' + t.mission.current_seq + '/' + t.mission.total : '';
    const btns = can('operator admin') ? h('div', { class: 'btns' },
      ['pause', 'resume', 'return_to_launch', 'land'].map((c) => h('button', { dataset: { cmd: c, drone: s.id }, onclick: () => command(s.id, { command: c }) }, label(c).replace('return to launch', 'RTL')))) : null;
    ul.append(h('li', { dataset: { drone: s.id } },
      h('b', {}, s.id), ' ', h('span', { class: 'badge' }, s.online === false || st.online === false ? 'offline' : (t.mode || st.mode || 'online')),
      h('div', { class: 'meta' }, 'battery ' + batt + prog + (st.spool_depth !== undefined ? ' · spool ' + st.spool_depth : '')),
      link ? h('div', { class: 'meta' }, link) : null,
      st.readiness ? h('div', { class: 'meta readiness ' + (st.readiness.ready ? 'ready' : 'not-ready'), dataset: { readiness: st.readiness.ready ? 'ready' : 'not-ready' } },
        st.readiness.ready ? 'ready to launch' : 'not ready: ' + (st.readiness.reason || '')) : null,
      st.rtl_target ? h('div', { class: 'meta', dataset: { rtl: '' } }, 'RTL → ' + st.rtl_target.description) : null,
      st.fence ? h('div', { class: 'meta', dataset: { fence: '' } }, st.fence) : null,
      btns));
    sel.append(h('option', { value: s.id }, s.id));
  }
  if (cur) sel.value = cur;
}
async function command(drone, body) {
  try { trackCommand(await api('POST', '/api/drones/' + drone + '/commands', body)); }
  catch (e) { logLine('refused', drone + ' ' + (body.command || '') + ': ' + e.message); }
}
function logLine(cls, text, id) {
  const li = h('li', { class: cls, dataset: id ? { command: id } : {} }, text);
  $('command-log').prepend(li);
  while ($('command-log').children.length > 50) $('command-log').lastChild.remove();
  return li;
}
function trackCommand(c) {
  if (T.commands.has(c.command_id)) return;
  const rec = { c, results: [] }; T.commands.set(c.command_id, rec);
  rec.li = logLine('', '', c.command_id); renderCommand(rec);
}
function renderCommand(rec) {
  const last = rec.results[rec.results.length - 1];
  const status = last ? last.status + (last.reason ? ': ' + last.reason : '') : 'sent';
  rec.li.className = last && ['succeeded', 'refused', 'failed', 'expired', 'unauthorized'].includes(last.status) ? 'final-' + last.status : '';
  rec.li.dataset.status = last ? last.status : 'sent';
  rec.li.textContent = new Date(rec.c.t_unix_ms).toLocaleTimeString() + ' ' + rec.c.drone_id + ' ' + label(rec.c.command) + ' → ' + status;
}
async function loadCommands() {
  for (const row of (await api('GET', '/api/commands?limit=20')).reverse()) {
    trackCommand(row.command);
    const rec = T.commands.get(row.command.command_id); rec.results = row.results; renderCommand(rec);
  }
}

// ------------------------------------------------------------ missions
function fillAreaPicker() {
  const sel = clear($('mission-area'));
  sel.append(h('option', { value: '' }, '— pick an area —'));
  (T.mapConfig.layers.features || []).forEach((f, i) => {
    const p = f.properties || {};
    if ((p.kind === 'area' || p.kind === 'grid') && /Polygon/.test(f.geometry.type))
      sel.append(h('option', { value: String(i) }, p.kind === 'area' ? (p.name || 'area ' + i) : (p.village ? 'grid cell ' + p.village + ' (' + p.grid_id + ')' : 'cell ' + i)));
  });
}
function ringToWire(ring) { const r = ring.map(([lon, lat]) => ({ lat_deg: lat, lon_deg: lon })); if (r.length > 1 && r[0].lat_deg === r[r.length - 1].lat_deg && r[0].lon_deg === r[r.length - 1].lon_deg) r.pop(); return r; }
function patrolSpec() {
  const areas = [];
  if (T.draw && T.draw.points.length >= 3) areas.push({ exterior: T.draw.points.map(([lat, lon]) => ({ lat_deg: lat, lon_deg: lon })), holes: [] });
  else if ($('mission-area').value !== '') {
    const g = T.mapConfig.layers.features[Number($('mission-area').value)].geometry;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
    for (const p of polys) areas.push({ exterior: ringToWire(p[0]), holes: p.slice(1).map(ringToWire) });
  }
  const nfz = [];
  for (const f of T.mapConfig.layers.features || []) {
    const p = f.properties || {};
    if (p.kind !== 'no_fly_zone') continue;
    if (f.geometry.type === 'Point') nfz.push({ name: p.name || 'no-fly zone', shape: 'circle', center: { lat_deg: f.geometry.coordinates[1], lon_deg: f.geometry.coordinates[0] }, radius_m: p.radius_m || 50, buffer_m: p.buffer_m || 0 });
    else if (f.geometry.type === 'Polygon') nfz.push({ name: p.name || 'no-fly zone', shape: 'polygon', polygon: { exterior: ringToWire(f.geometry.coordinates[0]), holes: [] }, buffer_m: p.buffer_m || 0 });
  }
  return { name: 'patrol ' + new Date().toLocaleString(), areas, no_fly_zones: nfz, points_of_interest: [], altitude_rel_m: Number($('mission-alt').value) || 60 };
}
$('btn-draw').addEventListener('click', () => {
  if (T.draw) { T.draw = null; $('btn-draw').textContent = 'Draw area'; return; }
  T.layers.routes.clearLayers();
  T.draw = { points: [], layer: L.polygon([], { color: '#0af', weight: 2 }).addTo(T.layers.routes) };
  $('btn-draw').textContent = 'Stop drawing'; $('mission-area').value = '';
  $('mission-msg').textContent = 'Click the map to add corners, then Preview.';
});
$('btn-preview').addEventListener('click', async () => {
  const spec = patrolSpec();
  if (!spec.areas.length) { $('mission-msg').textContent = 'Pick or draw an area first.'; return; }
  const d = T.drones.get($('mission-drone').value), t = d && d.telemetry;
  const home = t && t.home ? { lat_deg: t.home.lat_deg, lon_deg: t.home.lon_deg } : (t ? { lat_deg: t.position.lat_deg, lon_deg: t.position.lon_deg } : undefined);
  $('mission-msg').textContent = 'Planning…';
  try {
    const p = await api('POST', '/api/missions/preview', { patrol: spec, home });
    T.preview = spec;
    T.layers.routes.clearLayers(); if (T.draw) T.draw.layer.addTo(T.layers.routes);
    const colors = ['#06f', '#f60', '#0a0', '#c0c', '#c00'];
    p.sorties.forEach((s, i) => L.polyline(s.route, { color: colors[i % colors.length], weight: 2 }).addTo(T.layers.routes));
    const s = p.summary;
    $('mission-msg').textContent = s.sorties + ' sortie(s) · ' + (s.time_s / 60).toFixed(1) + ' min · ' + (s.length_m / 1000).toFixed(2) + ' km · coverage ' + s.coverage_percent.toFixed(0) + '%';
    $('btn-launch').disabled = !d;
  } catch (e) { $('mission-msg').textContent = 'Cannot plan: ' + e.message; $('btn-launch').disabled = true; }
});
$('btn-launch').addEventListener('click', async () => {
  if (!T.preview) return;
  await command($('mission-drone').value, { command: 'launch_patrol', patrol: T.preview });
  $('mission-msg').textContent = 'Launch sent; the drone answers in the command log.';
});

// ------------------------------------------------------------ case desk
function fillFilters() {
  const put = (id, vals) => { const s = $(id); if (s.options.length > 1) return; for (const v of vals) s.append(h('option', { value: v }, label(v))); };
  put('f-status', STATUS); put('f-priority', PRIORITY); put('f-category', CATEGORY);
  const st = $('case-status'); if (st.options.length === 1) for (const v of STATUS.slice(3)) st.append(h('option', { value: v }, label(v)));
}
for (const id of ['f-status', 'f-priority', 'f-category', 'f-village']) $(id).addEventListener('change', loadCases);
async function loadCases() {
  fillFilters();
  const q = new URLSearchParams();
  for (const [k, id] of [['status', 'f-status'], ['priority', 'f-priority'], ['category', 'f-category'], ['village', 'f-village']]) if ($(id).value) q.set(k, $(id).value);
  const rows = await api('GET', '/api/cases?' + q.toString());
  if (!q.toString()) { T.cases.clear(); }
  for (const c of rows) T.cases.set(c.case_id, c);
  const vs = $('f-village'), known = new Set([...vs.options].map((o) => o.value));
  for (const c of T.cases.values()) if (c.grid && c.grid.village && !known.has(c.grid.village)) { known.add(c.grid.village); vs.append(h('option', { value: c.grid.village }, c.grid.village)); }
  renderCases(rows);
}
function caseRow(c) {
  return h('tr', { dataset: { caseId: c.case_id }, class: T.selectedCase === c.case_id ? 'selected' : '', onclick: () => openCase(c.case_id) },
    h('td', {}, h('span', { class: 'badge pri-' + c.priority }, c.priority)),
    h('td', {}, h('span', { class: 'badge st-' + c.status, dataset: { status: c.status } }, c.status)),
    h('td', {}, c.title),
    h('td', {}, c.grid ? c.grid.village || c.grid.grid_id : '—'),
    h('td', {}, label(c.category)),
    h('td', {}, String(c.alert_count)),
    h('td', {}, age(c.updated_unix_ms)));
}
function renderCases(rows) {
  const tb = clear($('cases-table').querySelector('tbody'));
  for (const c of rows) tb.append(caseRow(c));
}
function caseMatchesFilter(c) {
  return (!$('f-status').value || c.status === $('f-status').value) && (!$('f-priority').value || c.priority === $('f-priority').value)
    && (!$('f-category').value || c.category === $('f-category').value) && (!$('f-village').value || (c.grid && c.grid.village === $('f-village').value));
}
function caseChanged(c) {
  T.cases.set(c.case_id, c);
  const tb = $('cases-table').querySelector('tbody');
  const old = tb.querySelector('[data-case-id="' + c.case_id + '"]');
  if (caseMatchesFilter(c)) { if (old) old.replaceWith(caseRow(c)); else tb.prepend(caseRow(c)); } else if (old) old.remove();
  if (T.selectedCase === c.case_id) openCase(c.case_id);
}
async function openCase(id) {
  T.selectedCase = id;
  for (const tr of document.querySelectorAll('#cases-table tbody tr')) tr.classList.toggle('selected', tr.dataset.caseId === id);
  const d = await api('GET', '/api/cases/' + id);
  const c = d.case;
  $('case-detail').hidden = false;
  $('case-title').textContent = c.title;
  const f = clear($('case-facts'));
  const add = (k, v) => f.append(h('dt', {}, k), h('dd', {}, v));
  add('Case', c.case_id);
  add('Status', h('span', { class: 'badge st-' + c.status, id: 'case-status-badge' }, c.status));
  add('Priority', c.priority + (c.priority_reasons.length ? ' — ' + c.priority_reasons.join('; ') : ''));
  add('Category', label(c.category));
  if (c.grid) add('Grid', [c.grid.county, c.grid.township, c.grid.village, c.grid.grid_id].filter(Boolean).join(' / '));
  add('Window', when(c.t_start_unix_ms) + ' → ' + when(c.t_end_unix_ms));
  add('Confirmed by', c.confirmed_by || '—');
  add('Route', (c.route || 'none') + (d.delivery ? ' · ' + d.delivery.state + (d.delivery.last_error ? ' (' + d.delivery.last_error + ')' : '') : ''));
  const ev = clear($('case-evidence'));
  for (const a of d.alerts) if (a.snapshot_url) ev.append(h('a', { href: a.snapshot_url, target: '_blank', rel: 'noopener' }, h('img', { src: a.snapshot_url, alt: 'snapshot' })));
  for (const v of d.clips || []) ev.append(h('figure', { class: 'clip' }, h('video', { src: v.url, controls: true, preload: 'metadata' }), h('figcaption', {}, 'clip ' + ((v.end_unix_ms - v.start_unix_ms) / 1000).toFixed(1) + ' s · SHA-256 ' + v.sha256)));
  const tl = clear($('case-timeline'));
  for (const e of d.timeline)
    tl.append(h('li', { dataset: { kind: e.kind, status: e.status || '' } },
      h('div', { class: 'when' }, when(e.t_unix_ms) + ' · ' + e.actor),
      h('div', {}, e.status ? h('span', { class: 'badge st-' + e.status }, e.status) : h('span', { class: 'badge' }, label(e.kind)),
        e.note ? h('span', { class: 'note' }, ' ' + e.note) : null)));
  const al = clear($('case-alerts'));
  for (const a of d.alerts) al.append(h('li', {}, when(a.t_unix_ms) + ' · ' + label(a.category) + (a.person_count ? ' · ' + a.person_count + ' people' : '') + ' · drone ' + a.drone_id + ' · ' + a.rule.name));
  $('case-cap').href = '/api/cases/' + c.case_id + '/cap.xml';
  if (!T.caseMap) {
    T.caseMap = L.map('case-map', { zoomControl: false, attributionControl: false });
    if (T.mapConfig.tiles) L.tileLayer(T.mapConfig.tiles.url, { maxZoom: T.mapConfig.tiles.max_zoom }).addTo(T.caseMap);
    L.geoJSON(T.mapConfig.layers, { style: (ft) => featureStyle(ft.properties && ft.properties.kind), pointToLayer: (ft, ll) => L.circleMarker(ll, { radius: 3 }) }).addTo(T.caseMap);
    T.caseLayer = L.layerGroup().addTo(T.caseMap);
  }
  T.caseLayer.clearLayers();
  for (const a of d.alerts) if (a.location) L.polygon(ellipse(a.location.lat_deg, a.location.lon_deg, a.location.sigma.semi_major_m, a.location.sigma.semi_minor_m, a.location.sigma.orientation_deg), { color: '#f0f', weight: 1 }).addTo(T.caseLayer);
  L.circleMarker([c.location.lat_deg, c.location.lon_deg], { radius: 8, color: '#fff', fillColor: COLORS[c.category] || '#333', fillOpacity: 1 }).addTo(T.caseLayer);
  setTimeout(() => { T.caseMap.invalidateSize(); T.caseMap.setView([c.location.lat_deg, c.location.lon_deg], 16); }, 0);
}
$('case-note-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = { note: $('case-note').value }; if ($('case-status').value) body.status = $('case-status').value;
  try { await api('POST', '/api/cases/' + T.selectedCase + '/notes', body); $('case-note').value = ''; $('case-status').value = ''; await openCase(T.selectedCase); }
  catch (e) { alert(e.message); }
});

// ------------------------------------------------------------ dispatch + admin
$('outbox-state').addEventListener('change', loadOutbox);
async function loadOutbox() {
  const s = $('outbox-state').value;
  const rows = await api('GET', '/api/dispatch/outbox' + (s ? '?state=' + s : ''));
  const tb = clear($('outbox-table').querySelector('tbody'));
  for (const r of rows) tb.append(h('tr', { dataset: { caseId: r.case_id } },
    h('td', {}, (T.cases.get(r.case_id) || {}).title || r.case_id), h('td', {}, r.route), h('td', {}, r.state), h('td', {}, String(r.attempts)), h('td', {}, r.last_error),
    h('td', {}, r.state === 'dead' ? h('button', { onclick: async () => { await api('POST', '/api/dispatch/outbox/' + r.case_id + '/retry'); loadOutbox(); } }, 'Retry') : '')));
}
async function loadAdmin() {
  const tb = clear($('users-table').querySelector('tbody'));
  for (const u of await api('GET', '/api/admin/users')) tb.append(h('tr', {}, h('td', {}, u.name), h('td', {}, u.role), h('td', {}, u.disabled ? 'yes' : '')));
  const ab = clear($('audit-table').querySelector('tbody'));
  for (const a of await api('GET', '/api/admin/audit?limit=200')) ab.append(h('tr', {}, h('td', {}, when(a.t_unix_ms)), h('td', {}, a.actor), h('td', {}, a.action), h('td', {}, a.object), h('td', {}, a.detail), h('td', {}, a.client)));
}
$('user-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try { await api('POST', '/api/admin/users', { name: $('u-name').value, role: $('u-role').value, password: $('u-password').value }); $('user-msg').textContent = 'Saved'; $('u-password').value = ''; loadAdmin(); }
  catch (e) { $('user-msg').textContent = e.message; }
});

// ------------------------------------------------------------ live feed
function connectLive() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/live');
  T.ws = ws;
  ws.onopen = () => { $('live-state').className = 'live on'; T.wsBackoff = 500; };
  ws.onclose = () => {
    $('live-state').className = 'live off';
    if (!T.session) return;
    setTimeout(() => { if (T.session) { connectLive(); loadAlerts(); loadCases(); } }, T.wsBackoff);
    T.wsBackoff = Math.min(T.wsBackoff * 2, 10000);
  };
  ws.onmessage = (ev) => {
    window.tiancha.messages++;
    const m = JSON.parse(ev.data), d = m.data;
    switch (m.type) {
      case 'alert': addAlert(d, true); break;
      case 'triage': { const a = T.alerts.get(d.alert_id); if (a) { a.triage = d.triage; a.case_id = d.case_id; addAlert(a, true); } break; }
      case 'telemetry': { const s = T.drones.get(d.drone_id.toString()) || { id: d.drone_id, trail: [] }; s.telemetry = d; T.drones.set(s.id, s); drawDrone(s); scheduleDrones(); break; }
      case 'status': { const s = T.drones.get(d.drone_id) || { id: d.drone_id, trail: [] }; s.status = d; s.online = d.online; T.drones.set(s.id, s); scheduleDrones(); break; }
      case 'command': trackCommand(d); break;
      case 'command_result': { const rec = T.commands.get(d.command_id); if (rec) { rec.results.push(d); renderCommand(rec); } break; }
      case 'case': caseChanged(d); break;
      case 'resync': loadAlerts(); loadCases(); break;
      default: break;
    }
  };
}
let dronesQueued = false;
function scheduleDrones() { if (dronesQueued) return; dronesQueued = true; setTimeout(() => { dronesQueued = false; renderDrones(); }, 500); }
setInterval(() => { for (const e of document.querySelectorAll('.age')) e.textContent = age(Number(e.dataset.t)); }, 5000);

// ------------------------------------------------------------ boot
(async () => {
  try { T.session = await api('GET', '/api/session'); await start(); }
  catch (_) { showLogin(); }
})();
