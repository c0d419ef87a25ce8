// Camera page: live picture with the configured zones drawn over it, facts, recent incidents, zone drawing.
// Live updates change the page in place: the zones' shapes and the drawing in progress are never rebuilt.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const cameraUrl = `/api/cameras/${encodeURIComponent(name)}`;
  const svgNS = "http://www.w3.org/2000/svg";
  const stage = document.getElementById("stage");
  const svg = document.getElementById("zones");

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(svgNS, tag);
    setAttrs(node, attrs);
    return node;
  }
  // Only what changed is written: an update that changes nothing leaves the nodes untouched.
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs)) if (node.getAttribute(k) !== String(v)) node.setAttribute(k, v);
  }
  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  // Two layers made once: the saved zones (updated per zone), and the zone being drawn above them.
  const savedLayer = svgEl("g", { class: "saved-zones" });
  const drawLayer = svgEl("g", { class: "drawing-layer" });
  svg.replaceChildren(savedLayer, drawLayer);
  const shapes = new Map(); // zone name -> {poly, label}

  let cam = await VM.api(cameraUrl);
  const size = () => [cam.width || 1, cam.height || 1];
  const scale = () => size()[1] / 576; // labels and corner dots keep their on-screen size at any resolution

  function drawZones() {
    const [w, h] = size();
    setAttrs(svg, { viewBox: `0 0 ${w} ${h}` });
    const seen = new Set();
    cam.zone_shapes.forEach((zone, i) => {
      seen.add(zone.name);
      let shape = shapes.get(zone.name);
      if (!shape) {
        shape = { poly: svgEl("polygon", { "data-zone": zone.name }), label: svgEl("text", { class: "zone-label" }) };
        shapes.set(zone.name, shape);
        savedLayer.append(shape.poly, shape.label);
      }
      const pts = zone.points.map(([x, y]) => (zone.relative ? [x * w, y * h] : [x, y]));
      setAttrs(shape.poly, { points: pts.map((p) => p.join(",")).join(" "), class: `zone zone-${i % 4}` });
      setAttrs(shape.label, { x: pts[0][0] + 4, y: pts[0][1] + 18 * scale(), "font-size": 18 * scale() });
      setText(shape.label, `${zone.name}: ${cam.zones[zone.name] ?? 0}`);
    });
    for (const [zone, shape] of shapes) {
      if (!seen.has(zone)) { shape.poly.remove(); shape.label.remove(); shapes.delete(zone); }
    }
    drawing.redraw(); // the picture's size may have become known
  }

  // The live picture: a new one is loaded off-screen and then swapped in, so the stage never goes blank.
  let wantedPicture = null;
  function showPicture(url) {
    const img = document.getElementById("live-image");
    img.hidden = !url;
    document.getElementById("no-image").hidden = !!url;
    if (!url || url === wantedPicture) return;
    wantedPicture = url;
    const next = new Image();
    next.onload = () => { if (wantedPicture === url) img.src = next.src; };
    next.src = url;
  }

  // What the camera's calibration chose from the heights of the people it saw, and on what evidence.
  function calibrationText(c) {
    if (!c.setting) return `默认设置 default kept: ${c.reason}`;
    const h = c.heights_px;
    return `${c.setting} (自动校准 calibrated ${VM.time(c.at)}: ${c.people} 人 people in ${c.frames} frames, ` +
      `身高 heights p5 ${h.p5} / median ${h.p50} px → ${c.scaled_px} px at the model ≥ ${c.min_height_px})`;
  }

  function show(next) {
    cam = next;
    setText(document.getElementById("camera-name"), cam.name);
    showPicture(cam.snapshot_url);
    const state = !cam.reporting ? "无数据 no data" : cam.online ? "在线 online" : "离线 OFFLINE";
    const facts = [["状态 State", state], ["人数 People", cam.people],
      ["区域 Zones", Object.entries(cam.zones).map(([z, n]) => `${z}: ${n}`).join(", ") || "—"],
      ["输入 Input fps", cam.input_fps.toFixed(1)], ["检测 Detect fps", cam.detect_fps.toFixed(1) +
        (cam.detect_fps_configured ? ` / ${cam.detect_fps_configured.toFixed(1)}` : "")],
      ["丢帧 Dropped", cam.dropped], ["重连 Reconnects", cam.reconnects], ["最后一帧 Last frame", VM.time(cam.last_frame_at)],
      ["地址 Source", cam.url], ["解码 Decoder", cam.decoder || "—"], ["错误 Error", cam.last_error || "—"]];
    if (cam.node) facts.push(["节点 Node", cam.node]);  // several machines (cluster:): which one runs it
    if (cam.calibration) facts.push(["检测设置 Detector", calibrationText(cam.calibration)]);
    document.getElementById("camera-facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k.startsWith("人数") ? "people-count" : "" }, v)]));
    if (cam.zone_shapes) drawZones();
  }

  // The zone being drawn: clicks on the stage (picture or live video, whichever fills it) become relative corners.
  const drawing = (() => {
    const points = [];
    const outline = svgEl("polygon", { class: "zone drawing" });
    const dots = [];
    drawLayer.append(outline);
    function redraw() {
      const [w, h] = size();
      setAttrs(outline, { points: points.map(([x, y]) => `${x * w},${y * h}`).join(" ") });
      while (dots.length < points.length) {
        const dot = svgEl("circle", { class: "corner", fill: "#ffc800", stroke: "#000" });
        dots.push(dot);
        drawLayer.append(dot);
      }
      while (dots.length > points.length) dots.pop().remove();
      dots.forEach((dot, i) => setAttrs(dot, { cx: points[i][0] * w, cy: points[i][1] * h, r: 6 * scale() }));
    }
    return { points, redraw };
  })();

  show(cam);
  setUpDrawing();

  function setUpDrawing() {
    const { points } = drawing;
    const yaml = document.getElementById("zone-yaml");
    const nameInput = document.getElementById("zone-name");
    const save = document.getElementById("zone-save");
    const status = document.getElementById("zone-status");
    save.hidden = VM.role() !== "admin";
    const zoneName = () => nameInput.value.trim();
    const say = (text, bad = false) => { status.textContent = text; status.classList.toggle("bad", bad); };
    const update = () => {
      drawing.redraw();
      const corners = points.map(([x, y]) => `[${x}, ${y}]`).join(", ");
      yaml.textContent = points.length ? `${zoneName()}: {points: [${corners}]}` : "";
      save.disabled = points.length < 3 || !zoneName();
    };
    stage.addEventListener("click", (ev) => {
      const box = stage.getBoundingClientRect();
      if (!box.width || !box.height) return;
      const x = Math.min(1, Math.max(0, (ev.clientX - box.left) / box.width));
      const y = Math.min(1, Math.max(0, (ev.clientY - box.top) / box.height));
      points.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
      update();
    });
    document.getElementById("zone-clear").addEventListener("click", () => { points.length = 0; update(); say(""); });
    nameInput.addEventListener("input", () => {
      update();
      const known = (cam.zone_shapes || []).some((z) => z.name === zoneName());
      say(known ? "已有此区域, 保存将替换它 a zone of this name exists: saving replaces its corners" : "");
    });
    save.addEventListener("click", async () => {
      save.disabled = true;
      say("保存中 Saving…");
      try {
        const res = await VM.api(`${cameraUrl}/zones/${encodeURIComponent(zoneName())}`,
          { method: "PUT", body: JSON.stringify({ points }) });
        show({ ...cam, ...res.camera }); // the saved zone is drawn from the file as the server now reads it
        points.length = 0;
        update();
        yaml.textContent = res.snippet;
        say(`已保存 Saved ${res.saved}: 引擎会自动应用 the engine applies it by itself.`);
      } catch (err) {
        say(`未保存 Not saved: ${err.message}`, true);
        update();
      }
    });
    update();
  }

  async function loadIncidents() {
    const page = await VM.api(`/api/incidents?camera=${encodeURIComponent(name)}&limit=20`);
    document.querySelector("#camera-incidents tbody").replaceChildren(...page.items.map(VM.incidentRow));
  }
  await loadIncidents();
  VM.events({
    camera: (c) => { if (c.name === name) show({ ...cam, ...c }); },
    incident: (e) => { if (e.camera === name) loadIncidents(); },
  });
})();
