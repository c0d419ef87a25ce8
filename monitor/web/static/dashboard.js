// Dashboard: one card per camera (state, people, detect fps, live image) and the open incidents.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const grid = document.getElementById("cameras");
  const cards = new Map();

  function card(cam) {
    const state = !cam.reporting ? "无数据 no data" : cam.online ? "在线 online" : "离线 OFFLINE";
    const img = cam.snapshot_url
      ? el("img", { src: cam.snapshot_url, alt: cam.name, class: "live-img" })
      : el("div", { class: "live-img empty" }, "暂无画面 no image");
    const node = el("a", {
      href: `/cameras/${encodeURIComponent(cam.name)}`, "data-camera": cam.name,
      class: `card ${cam.online ? "online" : "offline"} ${cam.open_incidents ? "alert" : ""}`,
    },
      el("h3", {}, cam.name, " ", el("span", { class: "state" }, state)),
      img,
      el("div", { class: "numbers" },
        el("span", { class: "people", title: "people" }, el("b", { class: "people-count" }, cam.people), " 人"),
        el("span", {}, `检测 ${cam.detect_fps.toFixed(1)} fps`),
        cam.open_incidents ? el("span", { class: "badge" }, `${cam.open_incidents} 未处理 open`) : ""),
      cam.last_error && !cam.online ? el("p", { class: "error" }, cam.last_error) : "");
    return node;
  }

  function show(cam) {
    const node = card(cam);
    const old = cards.get(cam.name);
    if (old) old.replaceWith(node); else grid.append(node);
    cards.set(cam.name, node);
  }

  async function loadCameras() {
    for (const cam of await VM.api("/api/cameras")) show(cam);
  }

  async function loadOpen() {
    const page = await VM.api("/api/incidents?status=open&limit=50");
    const body = document.querySelector("#open-incidents tbody");
    body.replaceChildren(...page.items.map(VM.incidentRow));
    if (!page.items.length) body.append(el("tr", {}, el("td", { class: "muted" }, "没有未处理事件 none")));
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
    if (engine.dispatcher_failures) reasons.push(`${engine.dispatcher_failures} 个动作失败 actions failed (see log)`);
    health.hidden = body.status !== "degraded";
    health.textContent = health.hidden ? "" : `降级运行 DEGRADED — ${reasons.join("; ") || "see /healthz"}`;
  }
  setInterval(loadHealth, 5000);

  await Promise.all([loadCameras(), loadOpen(), loadHealth()]);
  VM.events({ camera: show, incident: () => { loadOpen(); loadCameras(); } });
  // The live image is rewritten in place every few seconds: reload it even if no status event came.
  setInterval(() => {
    for (const img of grid.querySelectorAll("img.live-img")) {
      const url = new URL(img.src); url.searchParams.set("r", Date.now()); img.src = url.pathname + url.search;
    }
  }, 4000);
})();
