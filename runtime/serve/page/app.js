"use strict";
// The live page. One stream (or ?stream=NAME): video from stream.mjpg, one record per frame from
// /events (SSE), controls to /controls. Several streams: a mosaic of tiles, each its own MJPEG
// (snapshots beyond MJPEG_TILES, to stay under the browser's connections per host) with its bars,
// timeline and state, all fed by one /events/all connection. Recent clips from /clips in both.
(() => {
  const WINDOW_S = 60;
  const TILE_WINDOW_S = 30;
  const MJPEG_TILES = 4;
  const PALETTE = ["#ff9f1c", "#2ec4b6", "#e71d36", "#8ac926", "#a06cd5", "#4cc9f0", "#f15bb5", "#ffd166"];
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const chosen = params.get("stream");
  const state = { classes: [], history: [], bars: [], tiles: {} };
  const $ = (id) => document.getElementById(id);

  function url(path, extra, stream) {
    const q = new URLSearchParams(extra || {});
    if (token) q.set("token", token);
    const s = stream === undefined ? chosen : stream;
    if (s) q.set("stream", s);
    const text = q.toString();
    return text ? `${path}?${text}` : path;
  }

  function colour(i) { return PALETTE[i % PALETTE.length]; }

  function buildBars(box) {
    box.textContent = "";
    return state.classes.map((name, i) => {
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

  function showBars(rows, probs) {
    const top = probs.indexOf(Math.max(...probs));
    rows.forEach((row, i) => {
      row.querySelector(".fill").style.width = `${(probs[i] * 100).toFixed(1)}%`;
      row.querySelector(".value").textContent = probs[i].toFixed(2);
      row.dataset.p = probs[i];
      row.classList.toggle("top", i === top);
    });
  }

  function remember(history, record, windowS) {
    const probs = state.classes.map((name) => record.probabilities[name] || 0);
    const t = performance.now() / 1000;
    history.push({ t, probs, index: record.index, label: record.label });
    while (history.length && history[0].t < t - windowS) history.shift();
    return probs;
  }

  function showState(element, online) {
    element.textContent = online ? "live" : "offline";
    element.className = `${element.className.replace(/\b(on|off)\b/g, "").trim()} ${online ? "on" : "off"}`;
    element.dataset.online = online;
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

  function drawChart(canvas, history, windowS, axes) {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * ratio), h = Math.round(canvas.clientHeight * ratio);
    if (!w || !h) return;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    const x0 = (axes ? 34 : 4) * ratio, y0 = 8 * ratio, x1 = w - 8 * ratio, y1 = h - (axes ? 20 : 4) * ratio;
    ctx.clearRect(0, 0, w, h);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    ctx.fillStyle = "#8b96a1";
    ctx.strokeStyle = "#2a323b";
    ctx.lineWidth = ratio;
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      const y = y1 - p * (y1 - y0);
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      if (axes) ctx.fillText(p.toFixed(2), 2 * ratio, y + 4 * ratio);
    }
    if (axes) for (let s = 0; s <= windowS; s += 15) ctx.fillText(`-${windowS - s}s`, x0 + (s / windowS) * (x1 - x0) - 8 * ratio, h - 4 * ratio);
    if (!history.length) return;
    const last = history[history.length - 1];
    const xOf = (t) => x1 - ((last.t - t) / windowS) * (x1 - x0);
    const yOf = (p) => y1 - p * (y1 - y0);
    const top = last.probs.indexOf(Math.max(...last.probs));
    const order = state.classes.map((_, i) => i).filter((i) => i !== top).concat([top]);  // the label on top
    for (const c of order) {
      ctx.strokeStyle = colour(c);
      ctx.lineWidth = (c === top ? 3 : 1.5) * ratio;
      ctx.beginPath();
      history.forEach((point, j) => (j ? ctx.lineTo : ctx.moveTo).call(ctx, xOf(point.t), yOf(point.probs[c])));
      ctx.stroke();
    }
    ctx.fillStyle = colour(top);
    ctx.fillText(last.label, x1 - ctx.measureText(last.label).width - 4 * ratio, yOf(last.probs[top]) + (last.probs[top] > 0.5 ? 16 : -6) * ratio);
    Object.assign(canvas.dataset, { index: last.index, label: last.label, plot: [x0, y0, x1, y1].join(","), colour: colour(top) });
  }

  // ---- one stream ---------------------------------------------------------------------------
  function onRecord(record) {
    const probs = remember(state.history, record, WINDOW_S);
    const label = $("label");
    label.textContent = record.label;
    label.dataset.index = record.index;
    $("frame-index").textContent = record.index;
    showBars(state.bars, probs);
  }

  function onStats(s) {
    $("fps").textContent = s.fps.toFixed(1);
    $("inference").textContent = s.inference_ms.toFixed(1);
    $("e2e").textContent = s.end_to_end_ms.toFixed(0);
    $("dropped").textContent = s.dropped;
    $("frames").textContent = s.frames;
    $("viewers").textContent = s.clients.video;
    showState($("source-state"), s.online);
  }

  function startVideo(img, stream) {
    img.onerror = () => setTimeout(() => { img.src = url("stream.mjpg", { retry: Date.now() }, stream); }, 1000);
    img.src = url("stream.mjpg", {}, stream);
  }

  function listenSourceState(events, onState) {
    events.addEventListener("source_offline", (e) => onState(JSON.parse(e.data).stream, false));
    events.addEventListener("source_online", (e) => onState(JSON.parse(e.data).stream, true));
  }

  function startEvents(path, onMessage, onStatsEvent, onState) {
    const events = new EventSource(url(path));
    const status = $("status");
    events.onopen = () => { status.textContent = "connected"; status.className = "status on"; };
    events.onerror = () => { status.textContent = "reconnecting…"; status.className = "status off"; };
    events.onmessage = (e) => onMessage(JSON.parse(e.data));
    events.addEventListener("stats", (e) => onStatsEvent(JSON.parse(e.data)));
    listenSourceState(events, onState);
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

  function startSingle(info) {
    state.bars = buildBars($("bars"));
    showModel(info.model);
    showControls(info.controls);
    bindControls();
    startVideo($("video"), chosen);
    startEvents("events", onRecord, onStats, (_, online) => showState($("source-state"), online));
    setInterval(() => drawChart($("timeline"), state.history, WINDOW_S, true), 250);
  }

  // ---- every stream: the mosaic ---------------------------------------------------------------
  function makeTile(name, live) {
    const tile = $("tile-template").content.firstElementChild.cloneNode(true);
    tile.dataset.stream = name;
    const link = tile.querySelector(".name");
    link.textContent = name;
    link.href = "?" + new URLSearchParams(token ? { stream: name, token } : { stream: name }).toString();
    const img = tile.querySelector(".tile-video");
    img.alt = `stream ${name}`;
    if (live) startVideo(img, name);
    else setInterval(() => { img.src = url("snapshot.jpg", { t: Date.now() }, name); }, 1000);
    $("mosaic").appendChild(tile);
    return { tile, bars: buildBars(tile.querySelector(".tile-bars")), history: [],
             label: tile.querySelector(".label"), state: tile.querySelector(".state"),
             canvas: tile.querySelector(".tile-timeline") };
  }

  function onTileRecord(record) {
    const tile = state.tiles[record.stream];
    if (!tile) return;
    showBars(tile.bars, remember(tile.history, record, TILE_WINDOW_S));
    tile.label.textContent = record.label;
    Object.assign(tile.tile.dataset, { index: record.index, label: record.label });
  }

  function onTileState(stream, online) {
    const tile = state.tiles[stream];
    if (tile) { showState(tile.state, online); tile.tile.dataset.online = online; }
  }

  function startMosaic(streams) {
    $("single").hidden = true;
    $("source-state").hidden = true;
    $("mosaic").hidden = false;
    const live = streams.length <= MJPEG_TILES;
    for (const name of streams) state.tiles[name] = makeTile(name, live);
    startEvents("events/all", onTileRecord, (s) => onTileState(s.stream, s.online), onTileState);
    setInterval(() => Object.values(state.tiles).forEach((t) => drawChart(t.canvas, t.history, TILE_WINDOW_S, false)), 500);
  }

  function showPicker(streams) {
    const picker = $("picker");
    if (streams.length < 2) return;
    const choices = [["", "all streams"]].concat(streams.map((s) => [s, s]));
    for (const [value, text] of choices) picker.add(new Option(text, value, false, value === (chosen || "")));
    picker.hidden = false;
    picker.addEventListener("change", () => {
      const q = new URLSearchParams(token ? { token } : {});
      if (picker.value) q.set("stream", picker.value);
      location.search = q.toString();
    });
  }

  // ---- clips ---------------------------------------------------------------------------------
  function play(clip, item) {
    document.querySelectorAll("#clips li").forEach((li) => li.classList.toggle("playing", li === item));
    $("clip-player").src = url(`clips/${clip.name.replace(/\.mp4$/, ".mjpg")}`, {}, null);
    $("clip-player").dataset.clip = clip.name;
    const link = $("clip-download");
    link.href = url(`clips/${clip.name}`, {}, null);
    link.hidden = false;
  }

  async function refreshClips() {
    const reply = await fetch(url("clips", {}, null));
    if (!reply.ok) return;
    const clips = (await reply.json()).clips.filter((c) => !chosen || c.stream === chosen);
    const list = $("clips");
    const playing = $("clip-player").dataset.clip;
    list.textContent = "";
    for (const clip of clips) {
      const item = document.createElement("li");
      item.dataset.name = clip.name;
      item.textContent = `${clip.stream} · ${clip.label} · ${clip.time} · ${clip.frames} frames`;
      item.classList.toggle("playing", clip.name === playing);
      item.addEventListener("click", () => play(clip, item));
      list.appendChild(item);
    }
    $("clips-card").hidden = clips.length === 0;
  }

  async function start() {
    const reply = await fetch(url("info", {}, null));
    if (!reply.ok) { $("status").textContent = `error ${reply.status}`; return; }
    const info = await reply.json();
    state.classes = info.model.class_names || [];
    showPicker(info.streams);
    if (info.streams.length > 1 && !chosen) startMosaic(info.streams);
    else startSingle(info);
    refreshClips();
    setInterval(refreshClips, 3000);
  }

  start();
})();
