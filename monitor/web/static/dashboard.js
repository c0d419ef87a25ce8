// Dashboard: one card per camera (state, people, last frame age, detect fps, live image) and the open incidents.
// Cards are built once and updated in place: only changed text and classes are touched, and the live picture
// is swapped only once the next one has loaded, so it never flickers black.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const grid = document.getElementById("cameras");
  const cards = new Map();  // camera name -> { node, parts, cam }
  const STALE_S = 10;       // a last frame older than this is shown in red: the picture is frozen

  const setText = (node, value) => { const s = String(value ?? ""); if (node.textContent !== s) node.textContent = s; };
  const setClass = (node, name, on) => { if (node.classList.contains(name) !== !!on) node.classList.toggle(name, !!on); };

  function build(cam) {
    const parts = {
      state: el("span", { class: "state" }),
      picture: el("div", { class: "live-img empty" }, "暂无画面 no image"),
      people: el("b", { class: "people-count" }),
      age: el("span", { class: "frame-age", title: "最后一帧 last frame" }),
      fps: el("span", { class: "detect-fps", title: "实际/配置检测帧率 detect rate: real / configured" }),
      node: el("span", { class: "node muted", title: "运行节点 node running this camera", hidden: true }),
      badge: el("span", { class: "badge", hidden: true }),
      error: el("p", { class: "error", hidden: true }),
      speaker: el("p", { class: "error speaker-warning", "data-testid": "speaker-warning", role: "status", hidden: true }),
    };
    const node = el("a", { href: `/cameras/${encodeURIComponent(cam.name)}`, "data-camera": cam.name, class: "card" },
      el("h3", {}, el("span", { class: "cam-name" }, cam.name), " ", parts.state),
      parts.picture,
      el("div", { class: "numbers" },
        el("span", { class: "people", title: "people" }, parts.people, " 人"), parts.age, parts.fps, parts.node,
        parts.badge),
      parts.error, parts.speaker);
    return { node, parts, cam: null, shownSrc: null, wantedSrc: null, statusSrc: null };
  }

  // Load url off-screen, then show it: the <img> node stays, and its picture only ever changes to a loaded one.
  function showPicture(card, url) {
    if (!url || card.wantedSrc === url) return;
    card.wantedSrc = url;
    const next = new Image();
    next.onload = () => {
      if (card.wantedSrc !== url) return;  // a newer picture was asked for meanwhile
      let img = card.parts.picture;
      if (img.tagName !== "IMG") {  // the first picture replaces the "no image" box, once
        img = el("img", { alt: card.node.dataset.camera, class: "live-img" });
        card.parts.picture.replaceWith(img);
        card.parts.picture = img;
      }
      img.src = next.src;  // already decoded and cached: swapped without an empty frame
      card.shownSrc = url;
    };
    next.onerror = () => { if (card.wantedSrc === url) card.wantedSrc = card.shownSrc; };
    next.src = url;
  }

  function frameAge(card) {
    const at = card.cam && card.cam.last_frame_at ? Date.parse(card.cam.last_frame_at) : NaN;
    const age = isNaN(at) ? null : Math.max(0, (Date.now() - at) / 1000);
    const text = age === null ? "最后帧 no frame yet" : age < 60 ? `最后帧 frame ${Math.round(age)} s ago`
      : age < 3600 ? `最后帧 frame ${Math.floor(age / 60)} min ago` : `最后帧 frame ${Math.floor(age / 3600)} h ago`;
    setText(card.parts.age, text);
    setClass(card.parts.age, "stale", age === null || age > STALE_S);
  }

  function show(cam) {
    let card = cards.get(cam.name);
    if (!card) { card = build(cam); cards.set(cam.name, card); grid.append(card.node); }
    card.cam = cam;
    const fresh = cam.snapshot_url !== card.statusSrc;  // a new status picture (the 4 s refresh asks on its own)
    card.statusSrc = cam.snapshot_url;
    const { node, parts } = card;
    setClass(node, "online", cam.online);
    setClass(node, "offline", !cam.online);
    setClass(node, "alert", cam.open_incidents > 0);
    setText(parts.state, !cam.reporting ? "无数据 no data" : cam.online ? "在线 online" : "离线 OFFLINE");
    setText(parts.people, cam.people);
    const configured = cam.detect_fps_configured;
    setText(parts.fps, configured ? `检测 detect ${cam.detect_fps.toFixed(1)}/${configured.toFixed(1)} fps`
      : `检测 detect ${cam.detect_fps.toFixed(1)} fps`);
    setClass(parts.fps, "slow", !!configured && cam.online && cam.detect_fps < configured * 0.8);
    parts.node.hidden = !cam.node;  // several machines (cluster:): which one runs the camera
    setText(parts.node, cam.node ? `节点 node ${cam.node}` : "");
    parts.badge.hidden = !cam.open_incidents;
    setText(parts.badge, cam.open_incidents ? `${cam.open_incidents} 未处理 open` : "");
    const error = cam.last_error && !cam.online ? cam.last_error : "";
    parts.error.hidden = !error;
    setText(parts.error, error);
    parts.speaker.hidden = !cam.speaker_warning;  // a speaker of this camera failed its announcement or check
    setText(parts.speaker, cam.speaker_warning ? `⚠ ${cam.speaker_warning}` : "");
    frameAge(card);
    if (fresh) showPicture(card, cam.snapshot_url);
  }

  async function loadCameras() {
    for (const cam of await VM.api("/api/cameras")) show(cam);
  }

  let openShown = null;
  async function loadOpen() {
    const page = await VM.api("/api/incidents?status=open&limit=50");
    const key = JSON.stringify(page.items);
    if (key === openShown) return;  // unchanged: keep the rows (and their thumbnails) as they are
    openShown = key;
    const body = document.querySelector("#open-incidents tbody");
    body.replaceChildren(...page.items.map(VM.incidentRow));
    if (!page.items.length) body.append(el("tr", {}, el("td", { class: "muted", colspan: 8 }, "没有未处理事件 none")));
    document.getElementById("open-total").textContent = page.items.length ? `${page.items.length} 未处理 open` : "";
  }

  // Degraded engine (Redis unreachable, incidents waiting in the local outbox, clips stopped by a low disk).
  const health = document.getElementById("engine-health");
  async function loadHealth() {
    let body;
    try { body = await (await fetch("/healthz", { cache: "no-store" })).json(); } catch { body = { status: "degraded" }; }
    const engine = body.engine || {};
    const reasons = [];
    if (body.redis === false) reasons.push("Redis 不可达 unreachable");
    if (engine.outbox_pending) reasons.push(`${engine.outbox_pending} 条事件变更待写入 incident changes wait in the local outbox`);
    if (engine.store_error) reasons.push(`存储错误 store error: ${engine.store_error}`);
    if (engine.media_problem) reasons.push(`录像已停止 clips and pictures stopped: ${engine.media_problem}`);
    if (engine.detector_problem) reasons.push(`检测失败 detection failing: ${engine.detector_problem}`);
    if (engine.dispatcher_failures) reasons.push(`${engine.dispatcher_failures} 个动作失败 actions failed (see log)`);
    health.hidden = body.status !== "degraded";
    health.textContent = health.hidden ? "" : `降级运行 DEGRADED — ${reasons.join("; ") || "see /healthz"}`;
  }
  setInterval(loadHealth, 5000);

  await Promise.all([loadCameras(), loadOpen(), loadHealth()]);
  VM.events({ camera: show, incident: () => { loadOpen(); loadCameras(); } });
  setInterval(() => { for (const card of cards.values()) frameAge(card); }, 1000);
  setInterval(loadCameras, 10000);  // speaker warnings change without a camera event (a failed health check)
  // The live image is rewritten in place every few seconds: reload it even if no status event came.
  setInterval(() => {
    for (const card of cards.values()) {
      if (!card.cam || !card.cam.snapshot_url) continue;
      const url = new URL(card.cam.snapshot_url, location.href);
      url.searchParams.set("r", Date.now());
      showPicture(card, url.pathname + url.search);
    }
  }, 4000);
})();
