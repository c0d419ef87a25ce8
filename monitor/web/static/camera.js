// Camera page: live image with the configured zones drawn over it, facts, recent incidents.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const svgNS = "http://www.w3.org/2000/svg";
  let shapesDrawn = false;

  function drawZones(cam) {
    const svg = document.getElementById("zones");
    svg.replaceChildren();
    const w = cam.width || 1, h = cam.height || 1;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    cam.zone_shapes.forEach((zone, i) => {
      const pts = zone.points.map(([x, y]) => zone.relative ? [x * w, y * h] : [x, y]);
      const poly = document.createElementNS(svgNS, "polygon");
      poly.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
      poly.setAttribute("class", `zone zone-${i % 4}`);
      poly.setAttribute("data-zone", zone.name);
      const label = document.createElementNS(svgNS, "text");
      label.setAttribute("x", pts[0][0] + 4); label.setAttribute("y", pts[0][1] + 18 * (h / 576));
      label.setAttribute("font-size", 18 * (h / 576));
      label.setAttribute("class", "zone-label");
      label.textContent = `${zone.name}: ${cam.zones[zone.name] ?? 0}`;
      svg.append(poly, label);
    });
    shapesDrawn = cam.width > 0;
  }

  function show(cam) {
    document.getElementById("camera-name").textContent = cam.name;
    const img = document.getElementById("live-image");
    img.hidden = !cam.snapshot_url;
    document.getElementById("no-image").hidden = !!cam.snapshot_url;
    if (cam.snapshot_url) img.src = `${cam.snapshot_url}&r=${Date.now()}`;
    const state = !cam.reporting ? "无数据 no data" : cam.online ? "在线 online" : "离线 OFFLINE";
    const facts = [["状态 State", state], ["人数 People", cam.people],
      ["区域 Zones", Object.entries(cam.zones).map(([z, n]) => `${z}: ${n}`).join(", ") || "—"],
      ["输入 Input fps", cam.input_fps.toFixed(1)], ["检测 Detect fps", cam.detect_fps.toFixed(1) +
        (cam.detect_fps_configured ? ` / ${cam.detect_fps_configured.toFixed(1)}` : "")],
      ["丢帧 Dropped", cam.dropped], ["重连 Reconnects", cam.reconnects], ["最后一帧 Last frame", VM.time(cam.last_frame_at)],
      ["地址 Source", cam.url], ["错误 Error", cam.last_error || "—"]];
    document.getElementById("camera-facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k.startsWith("人数") ? "people-count" : "" }, v)]));
    if (cam.zone_shapes) drawZones(cam);
  }

  let cam = await VM.api(`/api/cameras/${encodeURIComponent(name)}`);
  show(cam);
  setUpDrawing();

  // Zone drawing: clicks on the picture become relative corners; the YAML is shown, admins may save it.
  function setUpDrawing() {
    const stage = document.getElementById("stage");
    const points = [];
    const yaml = document.getElementById("zone-yaml");
    const nameInput = document.getElementById("zone-name");
    const save = document.getElementById("zone-save");
    const status = document.getElementById("zone-status");
    save.hidden = VM.role() !== "admin";
    const render = () => {
      const svg = document.getElementById("zones");
      svg.querySelectorAll(".drawing").forEach((n) => n.remove());
      const w = cam.width || 1, h = cam.height || 1;
      const line = document.createElementNS(svgNS, points.length >= 3 ? "polygon" : "polyline");
      line.setAttribute("points", points.map(([x, y]) => `${x * w},${y * h}`).join(" "));
      line.setAttribute("class", "zone drawing");
      svg.append(line);
      const corners = points.map(([x, y]) => `[${x}, ${y}]`).join(", ");
      yaml.textContent = points.length ? `${nameInput.value}: {points: [${corners}]}` : "";
      save.disabled = points.length < 3;
    };
    stage.addEventListener("click", (ev) => {
      const box = document.getElementById("live-image").getBoundingClientRect();
      if (!box.width || !box.height) return;
      const x = Math.min(1, Math.max(0, (ev.clientX - box.left) / box.width));
      const y = Math.min(1, Math.max(0, (ev.clientY - box.top) / box.height));
      points.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
      render();
    });
    document.getElementById("zone-clear").addEventListener("click", () => { points.length = 0; render(); });
    nameInput.addEventListener("input", render);
    save.addEventListener("click", async () => {
      try {
        const res = await VM.api(`/api/cameras/${encodeURIComponent(name)}/zones/${encodeURIComponent(nameInput.value)}`,
          { method: "PUT", body: JSON.stringify({ points }) });
        status.textContent = `已保存 Saved ${res.saved}; the engine applies it by itself.`;
      } catch (err) {
        status.textContent = `未保存 Not saved: ${err.message}`;
      }
    });
    render();
  }
  async function loadIncidents() {
    const page = await VM.api(`/api/incidents?camera=${encodeURIComponent(name)}&limit=20`);
    document.querySelector("#camera-incidents tbody").replaceChildren(...page.items.map(VM.incidentRow));
  }
  await loadIncidents();
  VM.events({
    camera: (c) => { if (c.name === name) { cam = { ...cam, ...c }; show(cam); } },
    incident: (e) => { if (e.camera === name) loadIncidents(); },
  });
  if (!shapesDrawn) setTimeout(async () => show(await VM.api(`/api/cameras/${encodeURIComponent(name)}`)), 3000);
})();
