// Live video panel: each drone's video next to the map. WebRTC first (the
// drone's H.264 passed through by the station's webrtcbin; signalling on a
// WebSocket), MJPEG over HTTP as the fallback that always works. Started
// by app.js after login for roles that may watch (operator, admin).
// ?video=mjpeg or ?video=webrtc in the page URL forces a transport.
'use strict';
(() => {
  const V = { pc: null, ws: null, drone: null, mode: null, frames: 0, lastFrameAt: 0, fallbackReason: null, timer: null, drones: [] };
  window.tianchaVideo = V;
  const $ = (id) => document.getElementById(id);
  const status = (t) => { $('video-status').textContent = t; };
  const forced = new URLSearchParams(location.search).get('video');

  // The burned-in capture time (sim::camera::timestamp): 2 rows of 24
  // cells, cell = max(6, width/64) px, starting one cell from the
  // top-left corner; white = 1, MSB first; 44 bits of Unix ms, then a
  // 4-bit check (sum of the eleven nibbles mod 16). Returns null when
  // there is no valid code. `ctx` holds the frame at its own resolution.
  V.readTimestamp = function (ctx, width) {
    const c = Math.max(6, Math.floor(width / 64)), q = Math.max(1, Math.floor(c / 4));
    const img = ctx.getImageData(0, 0, c * 26, c * 3).data, rowLen = c * 26;
    let hi = 0, lo = 0; // 48 bits as two 24-bit halves
    for (let i = 0; i < 48; i++) {
      const row = Math.floor(i / 24), col = i % 24;
      let sum = 0, n = 0;
      for (let y = c * (1 + row) + q; y < c * (2 + row) - q; y++) {
        for (let x = c * (1 + col) + q; x < c * (2 + col) - q; x++) {
          const k = (y * rowLen + x) * 4;
          sum += 0.299 * img[k] + 0.587 * img[k + 1] + 0.114 * img[k + 2]; n++;
        }
      }
      const m = sum / n;
      let bit; if (m > 170) bit = 1; else if (m < 85) bit = 0; else return null;
      if (i < 24) hi = hi * 2 + bit; else lo = lo * 2 + bit;
    }
    const word = hi * 16777216 + lo;              // < 2^48, exact in a double
    const check = lo & 0xf, v = Math.floor(word / 16);
    let s = 0, t = v; for (let i = 0; i < 11; i++) { s += t % 16; t = Math.floor(t / 16); }
    return (s & 0xf) === check ? v : null;
  };

  function stop() {
    clearTimeout(V.timer); V.timer = null;
    if (V.ws) { V.ws.onclose = null; V.ws.close(); }
    if (V.pc) V.pc.close();
    V.ws = null; V.pc = null; V.mode = null;
    const v = $('video'); v.srcObject = null;
    const img = $('video-mjpeg'); img.removeAttribute('src');
  }
  V.stop = stop;

  function mjpeg(drone) {
    stop(); V.mode = 'mjpeg'; V.frames = 0;
    $('video').hidden = true;
    const img = $('video-mjpeg'); img.hidden = false;
    img.onload = () => { V.frames++; V.lastFrameAt = Date.now(); };
    img.onerror = () => status('MJPEG: no video');
    img.src = '/api/drones/' + encodeURIComponent(drone) + '/video.mjpeg';
    status('MJPEG' + (V.fallbackReason ? ' (WebRTC: ' + V.fallbackReason + ')' : ''));
  }

  function fallback(drone, why) {
    if (forced === 'webrtc') { status('WebRTC: ' + why); return; }
    V.fallbackReason = why; mjpeg(drone);
  }

  function countFrames(v, pc) {
    if (!('requestVideoFrameCallback' in v)) return;
    const tick = () => { if (V.pc !== pc) return; V.frames++; V.lastFrameAt = Date.now(); v.requestVideoFrameCallback(tick); };
    v.requestVideoFrameCallback(tick);
  }

  function webrtc(drone) {
    stop(); V.mode = 'webrtc'; V.frames = 0;
    const v = $('video'); v.hidden = false; $('video-mjpeg').hidden = true;
    const pc = new RTCPeerConnection({ iceServers: [] }); V.pc = pc;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(proto + '//' + location.host + '/api/drones/' + encodeURIComponent(drone) + '/video/webrtc');
    V.ws = ws;
    const pending = [];
    pc.ontrack = (e) => {
      v.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      v.play().catch(() => {});
      countFrames(v, pc);
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate && ws.readyState === 1) ws.send(JSON.stringify({ type: 'candidate', candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex }));
    };
    pc.onconnectionstatechange = () => {
      status('WebRTC ' + pc.connectionState);
      if (pc.connectionState === 'failed' && V.pc === pc) fallback(drone, 'connection failed');
    };
    ws.onmessage = async (ev) => {
      let m; try { m = JSON.parse(ev.data); } catch (_) { return; }
      try {
        if (m.type === 'offer') {
          await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
          const a = await pc.createAnswer();
          await pc.setLocalDescription(a);
          ws.send(JSON.stringify({ type: 'answer', sdp: a.sdp }));
          for (const c of pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
        } else if (m.type === 'candidate') {
          const c = { candidate: m.candidate, sdpMLineIndex: m.sdpMLineIndex };
          if (pc.remoteDescription) await pc.addIceCandidate(c).catch(() => {}); else pending.push(c);
        } else if (m.type === 'error') {
          if (V.pc === pc) fallback(drone, m.error);
        }
      } catch (e) { if (V.pc === pc) fallback(drone, String(e.message || e)); }
    };
    ws.onclose = () => { if (V.pc === pc) fallback(drone, 'signalling closed'); };
    status('WebRTC connecting');
    // No frame within 10 s: fall back.
    V.timer = setTimeout(() => { if (V.pc === pc && V.frames === 0) fallback(drone, 'no frames in 10 s'); }, 10000);
  }

  function play(drone) {
    V.drone = drone; V.fallbackReason = null;
    $('video-title').textContent = drone;
    const want = forced || $('video-mode').value;
    if (want === 'mjpeg') mjpeg(drone); else webrtc(drone);
  }
  V.play = play;

  V.start = async function (session) {
    const panel = $('video-panel');
    if (!session || !['operator', 'admin'].includes(session.role)) { panel.hidden = true; return; }
    let list;
    try {
      const r = await fetch('/api/video', { credentials: 'same-origin' });
      if (!r.ok) { panel.hidden = true; return; }
      list = await r.json();
    } catch (_) { panel.hidden = true; return; }
    V.drones = list.drones.map((d) => d.drone_id);
    if (!V.drones.length) { panel.hidden = true; return; }
    panel.hidden = false;
    const sel = $('video-drone');
    while (sel.firstChild) sel.removeChild(sel.firstChild);
    for (const d of V.drones) { const o = document.createElement('option'); o.value = d; o.textContent = d; sel.append(o); }
    if (forced) $('video-mode').value = forced;
    play(V.drones[0]);
  };
  $('video-drone').addEventListener('change', (e) => play(e.target.value));
  $('video-mode').addEventListener('change', () => { if (V.drone) play(V.drone); });
  $('video-stop').addEventListener('click', () => { stop(); status('stopped'); });
})();
