// Live video on the camera page: fMP4 fragments from /api/cameras/NAME/live into Media Source Extensions.
// The still picture stays underneath (the zone-drawing click target) and comes back whenever video cannot play.
// Stats for tests and the status line live on the video element (video.liveStats).
"use strict";
(() => {
  const { el } = VM;
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const stage = document.getElementById("stage");
  const HEADER = 16; // float64 wall-clock arrival at the server, float64 presentation time
  const TARGET_BEHIND_S = 0.15; // played this far behind the newest frame: room for network and decoder jitter
  const JUMP_BEHIND_S = 1.5; // further behind than this (a stall, a hidden tab): jump instead of catching up
  // A stream's first seconds come with the server's buffered GOP (up to one keyframe interval old) in one burst:
  // then any lag over twice the target is jumped, or catching up at 1.1x would take ten times as long as the lag.
  const SETTLE_MS = 3000;
  const KEEP_S = 20; // seconds of played video kept in the SourceBuffer
  const H265_NOTE = "H.265: live video unavailable, showing stills 显示静态画面";

  const video = el("video", { "data-testid": "live-video", muted: true, autoplay: true, playsinline: true });
  video.muted = true; // the attribute alone does not mute a script-created element
  stage.insertBefore(video, document.getElementById("zones")); // zones (and drawing) stay on top
  const status = el("span", { class: "live-status muted" }, "实时视频连接中 connecting live video…");
  const boxes = el("button", { type: "button", class: "live-boxes", hidden: true }, "显示检测框 Show detections");
  stage.after(el("div", { class: "live-bar" }, status, " ", boxes));
  boxes.addEventListener("click", () => {
    const on = stage.classList.toggle("show-boxes"); // the annotated still (boxes) over the video, zones above
    boxes.textContent = on ? "隐藏检测框 Hide detections" : "显示检测框 Show detections";
  });

  // clock: [presentation time, server arrival] of recent frames, to find each shown frame's arrival
  const stats = { frames: 0, firstFrameAt: null, latencies: [], clock: [], codec: null, mode: "connecting" };
  video.liveStats = stats;
  let ms = null, sb = null, pending = [], retry = 1000, closedForGood = false, startedAt = 0;

  function showStill(text, mode) {
    stats.mode = mode;
    stage.classList.remove("live-on", "playing", "show-boxes");
    boxes.hidden = true;
    boxes.textContent = "显示检测框 Show detections";
    status.textContent = text;
    if (video.src) { video.removeAttribute("src"); video.load(); }
    ms = null; sb = null; pending = [];
  }

  function start(msg) {
    if (!window.MediaSource || !MediaSource.isTypeSupported(msg.mime)) {
      showStill(`浏览器无法播放 this browser cannot play ${msg.codec}: showing stills 显示静态画面`, "unsupported");
      return;
    }
    showStill("实时视频缓冲中 buffering live video…", "starting");
    startedAt = performance.now();
    stats.codec = msg.codec;
    video.width = msg.width; video.height = msg.height; // aspect ratio before the first frame: no jump in layout
    stage.classList.add("live-on");
    const init = Uint8Array.from(atob(msg.init), (c) => c.charCodeAt(0));
    const source = new MediaSource();
    ms = source;
    source.addEventListener("sourceopen", () => {
      if (ms !== source) return;
      sb = source.addSourceBuffer(msg.mime);
      sb.mode = "segments"; // keep the camera's timestamps: they map frames to server arrival times
      sb.addEventListener("updateend", pump);
      pending.unshift(init);
      pump();
    }, { once: true });
    video.src = URL.createObjectURL(source);
  }

  function pump() {
    if (!sb || sb.updating || !pending.length) return;
    const b = video.buffered;
    if (b.length && video.currentTime - b.start(0) > KEEP_S * 1.5) {
      sb.remove(b.start(0), video.currentTime - KEEP_S); // bounded memory on long viewing
      return;
    }
    const chunks = pending; pending = [];
    const size = chunks.reduce((n, c) => n + c.byteLength, 0);
    const data = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) { data.set(c, at); at += c.byteLength; }
    try { sb.appendBuffer(data); } catch (err) { fail(err); return; }
    chase();
  }

  // Stay near the live edge without stalling: start a few frames behind the newest one (the server sends the GOP
  // so that frame can be decoded), play a little faster while too far behind, jump only after a long stall (or
  // at a stream's start, past its burst).
  function chase() {
    const b = video.buffered;
    if (!b.length) return;
    const start = b.start(b.length - 1), end = b.end(b.length - 1), behind = end - video.currentTime;
    const jumpOver = performance.now() - startedAt < SETTLE_MS ? 2 * TARGET_BEHIND_S : JUMP_BEHIND_S;
    if (behind > jumpOver || video.currentTime < start) video.currentTime = Math.max(start, end - TARGET_BEHIND_S);
    else video.playbackRate = behind > 2 * TARGET_BEHIND_S ? 1.1 : 1.0;
    if (video.paused) video.play().catch(() => null);
  }

  function fail(err) {
    showStill(`实时视频中断 live video stopped (${err.message || err}): showing stills 显示静态画面`, "failed");
    if (ws) ws.close();
  }

  function onFrame(now, meta) {
    stats.frames += 1;
    if (stats.firstFrameAt === null) {
      stats.firstFrameAt = performance.now();
    }
    if (stats.mode !== "playing" && sb) {
      stage.classList.add("playing");
      boxes.hidden = false;
      stats.mode = "playing";
    }
    // Latency: this frame's server arrival (sent with it) to the moment Chromium expects to show it.
    let arrived;
    for (let i = stats.clock.length - 1; i >= 0; i--) {
      if (Math.abs(stats.clock[i][0] - meta.mediaTime) < 0.002) { arrived = stats.clock[i][1]; break; }
    }
    if (arrived !== undefined) {
      const shown = (performance.timeOrigin + meta.expectedDisplayTime) / 1000;
      stats.latencies.push(shown - arrived);
      if (stats.latencies.length > 300) stats.latencies.shift();
      if (stats.frames % 10 === 0) {
        const sorted = [...stats.latencies].sort((a, b) => a - b);
        status.textContent = `实时 live · 延迟 latency ${sorted[sorted.length >> 1].toFixed(2)} s`;
      }
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);

  let ws = null;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/api/cameras/${encodeURIComponent(name)}/live`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") { control(JSON.parse(ev.data)); return; }
      if (!ms) return;
      const head = new DataView(ev.data, 0, HEADER);
      const pts = head.getFloat64(8);
      stats.clock.push([pts, head.getFloat64(0)]);
      if (stats.clock.length > 600) stats.clock.shift();
      pending.push(new Uint8Array(ev.data, HEADER));
      pump();
    };
    ws.onopen = () => { retry = 1000; };
    ws.onclose = (ev) => {
      if (ev.code === 4401) { showStill("登录已结束 session ended: showing stills 显示静态画面", "ended"); return; }
      if (closedForGood || stats.mode === "unsupported") return;
      if (stats.mode !== "failed") showStill("实时视频重连中 reconnecting live video…", "reconnecting");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  function control(msg) {
    if (msg.type === "init") start(msg);
    else if (msg.type === "unsupported") {
      showStill(msg.codec === "hevc" ? H265_NOTE : `${msg.codec}: 无实时视频 no live video, showing stills 显示静态画面`,
                "unsupported");
      stage.after(el("p", { class: "live-note banner", "data-testid": "live-note" }, status.textContent));
    } else if (msg.type === "offline") showStill(`摄像机离线 camera offline: ${msg.error}`, "offline");
  }

  window.addEventListener("pagehide", () => { closedForGood = true; if (ws) ws.close(); });
  connect();
})();
