"use strict";
// The live page: video from stream.mjpg, one record per frame from /events (SSE), controls to /controls.
(() => {
  const WINDOW_S = 60;
  const PALETTE = ["#ff9f1c", "#2ec4b6", "#e71d36", "#8ac926", "#a06cd5", "#4cc9f0", "#f15bb5", "#ffd166"];
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const stream = params.get("stream");
  const state = { classes: [], history: [], bars: [] };
  const $ = (id) => document.getElementById(id);

  function url(path, extra) {
    const q = new URLSearchParams(extra || {});
    if (token) q.set("token", token);
    if (stream) q.set("stream", stream);
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  function colour(i) { return PALETTE[i % PALETTE.length]; }

  function buildBars() {
    const box = $("bars");
    box.textContent = "";
    state.bars = state.classes.map((name, i) => {
      const row = document.createElement("div");
      row.className = "bar-row";
      row.dataset.class = name;
      row.innerHTML = '<span class="name"></span><div class="track"><div class="fill"></div></div><span class="value">–</span>';
      row.querySelector(".name").textContent = name;
      row.querySelector(".fill").style.background = colour(i);
      box.appendChild(row);
      return row;
    });
  }

  function showModel(model) {
    const table = $("model");
    table.textContent = "";
    const rows = Object.entries(model).filter(([k]) => k !== "class_names");
    rows.push(["classes", (model.class_names || []).join(", ")]);
    for (const [key, value] of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = key.replace(/_/g, " ");
      tr.insertCell().textContent = typeof value === "object" ? describe(value) : String(value);
    }
  }

  function describe(value) {
    if (Array.isArray(value)) return value.join(", ");
    return Object.entries(value).map(([k, v]) => `${k}: ${Array.isArray(v) ? "[" + v.join(", ") + "]" : v}`).join("; ");
  }

  function onRecord(record) {
    const probs = state.classes.map((name) => record.probabilities[name] || 0);
    const top = probs.indexOf(Math.max(...probs));
    const label = $("label");
    label.textContent = record.label;
    label.dataset.index = record.index;
    $("frame-index").textContent = record.index;
    state.bars.forEach((row, i) => {
      row.querySelector(".fill").style.width = `${(probs[i] * 100).toFixed(1)}%`;
      row.querySelector(".value").textContent = probs[i].toFixed(2);
      row.dataset.p = probs[i];
      row.classList.toggle("top", i === top);
    });
    const t = performance.now() / 1000;
    state.history.push({ t, probs, index: record.index, label: record.label });
    while (state.history.length && state.history[0].t < t - WINDOW_S) state.history.shift();
  }

  function onStats(s) {
    $("fps").textContent = s.fps.toFixed(1);
    $("inference").textContent = s.inference_ms.toFixed(1);
    $("e2e").textContent = s.end_to_end_ms.toFixed(0);
    $("dropped").textContent = s.dropped;
    $("frames").textContent = s.frames;
    $("viewers").textContent = s.clients.video;
  }

  function drawChart() {
    const canvas = $("timeline");
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * ratio), h = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    const x0 = 34 * ratio, y0 = 8 * ratio, x1 = w - 8 * ratio, y1 = h - 20 * ratio;
    ctx.clearRect(0, 0, w, h);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    ctx.fillStyle = "#8b96a1";
    ctx.strokeStyle = "#2a323b";
    ctx.lineWidth = ratio;
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      const y = y1 - p * (y1 - y0);
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      ctx.fillText(p.toFixed(2), 2 * ratio, y + 4 * ratio);
    }
    for (let s = 0; s <= WINDOW_S; s += 15) ctx.fillText(`-${WINDOW_S - s}s`, x0 + (s / WINDOW_S) * (x1 - x0) - 8 * ratio, h - 4 * ratio);
    const hist = state.history;
    if (!hist.length) return;
    const last = hist[hist.length - 1];
    const xOf = (t) => x1 - ((last.t - t) / WINDOW_S) * (x1 - x0);
    const yOf = (p) => y1 - p * (y1 - y0);
    const top = last.probs.indexOf(Math.max(...last.probs));
    const order = state.classes.map((_, i) => i).filter((i) => i !== top).concat([top]);  // the label on top
    for (const c of order) {
      ctx.strokeStyle = colour(c);
      ctx.lineWidth = (c === top ? 3 : 1.5) * ratio;
      ctx.beginPath();
      hist.forEach((point, j) => (j ? ctx.lineTo : ctx.moveTo).call(ctx, xOf(point.t), yOf(point.probs[c])));
      ctx.stroke();
    }
    ctx.fillStyle = colour(top);
    ctx.fillText(last.label, x1 - ctx.measureText(last.label).width - 4 * ratio, yOf(last.probs[top]) + (last.probs[top] > 0.5 ? 16 : -6) * ratio);
    Object.assign(canvas.dataset, { index: last.index, label: last.label, plot: [x0, y0, x1, y1].join(","), colour: colour(top) });
  }

  function startVideo() {
    const img = $("video");
    img.onerror = () => setTimeout(() => { img.src = url("stream.mjpg", { retry: Date.now() }); }, 1000);
    img.src = url("stream.mjpg");
  }

  function startEvents() {
    const events = new EventSource(url("events"));
    const status = $("status");
    events.onopen = () => { status.textContent = "live"; status.className = "status on"; };
    events.onerror = () => { status.textContent = "reconnecting…"; status.className = "status off"; };
    events.onmessage = (e) => onRecord(JSON.parse(e.data));
    events.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
  }

  function showControls(c) {
    $("opacity").value = c.opacity; $("opacity-value").textContent = Number(c.opacity).toFixed(2);
    $("smoothing").value = c.smoothing; $("smoothing-value").textContent = Number(c.smoothing).toFixed(2);
    $("map").checked = c.map;
  }

  async function sendControl(change) {
    const reply = await fetch(url("controls"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(change) });
    if (reply.ok) showControls(await reply.json());
  }

  function bindControls() {
    $("opacity").addEventListener("input", (e) => sendControl({ opacity: Number(e.target.value) }));
    $("smoothing").addEventListener("input", (e) => sendControl({ smoothing: Number(e.target.value) }));
    $("map").addEventListener("change", (e) => sendControl({ map: e.target.checked }));
  }

  async function start() {
    const reply = await fetch(url("info"));
    if (!reply.ok) { $("status").textContent = `error ${reply.status}`; return; }
    const info = await reply.json();
    state.classes = info.model.class_names || [];
    buildBars();
    showModel(info.model);
    showControls(info.controls);
    bindControls();
    startVideo();
    startEvents();
    setInterval(drawChart, 250);
  }

  start();
})();
