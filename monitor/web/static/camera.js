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
      ["输入 Input fps", cam.input_fps.toFixed(1)], ["检测 Detect fps", cam.detect_fps.toFixed(1)],
      ["丢帧 Dropped", cam.dropped], ["重连 Reconnects", cam.reconnects], ["最后一帧 Last frame", VM.time(cam.last_frame_at)],
      ["地址 Source", cam.url], ["错误 Error", cam.last_error || "—"]];
    document.getElementById("camera-facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k.startsWith("人数") ? "people-count" : "" }, v)]));
    if (cam.zone_shapes) drawZones(cam);
  }

  let cam = await VM.api(`/api/cameras/${encodeURIComponent(name)}`);
  show(cam);
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
