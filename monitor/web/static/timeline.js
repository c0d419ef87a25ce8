// Timeline: a bar per camera over the last hours, each incident a mark placed by time (click opens it), quick
// repeats bracketed as one episode. Redrawn in place (nodes kept by id) on live events and as time passes.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const rowsBox = document.getElementById("tl-rows");
  const axis = document.getElementById("tl-axis");
  const hoursSelect = document.getElementById("hours");
  const note = document.getElementById("tl-note");
  const params = new URLSearchParams(location.search);
  if (["1", "6", "24"].includes(params.get("hours"))) hoursSelect.value = params.get("hours");

  const rows = new Map();   // camera -> {row, bar}
  const marks = new Map();  // incident id -> node
  const bands = new Map();  // episode id -> node
  const REVIEWED = new Set(["acknowledged", "false_alarm"]);
  const ms = (iso) => Date.parse(iso);

  // Percent of the window for a time span, clipped to it.
  function place(node, from, to, start, span) {
    const a = Math.max(from, start), b = Math.min(Math.max(to, a), start + span);
    node.style.left = `${((a - start) / span) * 100}%`;
    node.style.width = `${((b - a) / span) * 100}%`;
  }

  function bar(name) {
    let entry = rows.get(name);
    if (!entry) {
      const barNode = el("div", { class: "tl-bar" });
      const row = el("div", { class: "tl-row", "data-camera": name },
        el("a", { class: "tl-name", href: `/cameras/${encodeURIComponent(name)}` }, name), barNode);
      entry = { row, bar: barNode };
      rows.set(name, entry);
    }
    return entry;
  }

  function title(inc, count) {
    const end = inc.closed_at ? VM.time(inc.closed_at) : "进行中 ongoing";
    return `${VM.kindName(inc.kind)} · ${inc.camera}${inc.zone ? " / " + inc.zone : ""}\n`
      + `${VM.time(inc.opened_at)} – ${end} (${VM.duration(inc.duration_s)})\n${VM.statusName(inc.status)}`
      + `, 峰值 peak ${inc.peak_count}` + (count > 1 ? `\n事件组 episode ×${count}` : "");
  }

  function ticks(start, span) {
    const steps = [10, 30, 60, 120, 180, 360].map((m) => m * 60000);
    const step = steps.find((s) => span / s <= 8) || steps[steps.length - 1];
    const nodes = [];
    for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) {
      const label = new Date(t).toLocaleTimeString("zh-CN", { hour12: false, hour: "2-digit", minute: "2-digit" });
      const tick = el("span", { class: "tl-tick" }, label);
      tick.style.left = `${((t - start) / span) * 100}%`;
      nodes.push(tick);
    }
    axis.replaceChildren(...nodes);
  }

  function render(data) {
    const start = ms(data.start), span = ms(data.end) - start;
    ticks(start, span);
    const seenMarks = new Set(), seenBands = new Set();
    const order = [];
    for (const cam of data.cameras) {
      const { row, bar: barNode } = bar(cam.name);
      order.push(row);
      const episodeOf = new Map();
      for (const ep of cam.episodes) for (const id of ep.incident_ids) episodeOf.set(id, ep);
      for (const ep of cam.episodes) {
        seenBands.add(ep.id);
        let band = bands.get(ep.id);
        if (!band) { band = el("div", { class: "tl-episode" }); bands.set(ep.id, band); }
        band.className = "tl-episode" + (REVIEWED.has(ep.status) ? " reviewed" : "");
        band.dataset.episode = ep.id;
        band.dataset.count = ep.incident_ids.length;
        band.title = `事件组 episode ×${ep.incident_ids.length}`;
        place(band, ms(ep.opened_at), ep.closed_at ? ms(ep.closed_at) : start + span, start, span);
        if (band.parentNode !== barNode) barNode.append(band);
      }
      for (const inc of cam.incidents) {
        seenMarks.add(inc.id);
        let mark = marks.get(inc.id);
        if (!mark) { mark = el("a", { href: `/incidents/${encodeURIComponent(inc.id)}` }); marks.set(inc.id, mark); }
        const ep = episodeOf.get(inc.id);
        mark.className = `tl-mark kind-${inc.kind} status-${inc.status}`;
        mark.dataset.id = inc.id;
        mark.dataset.status = inc.status;
        if (ep) mark.dataset.episode = ep.id; else delete mark.dataset.episode;
        mark.title = title(inc, ep ? ep.incident_ids.length : 1);
        mark.setAttribute("aria-label", mark.title);
        place(mark, ms(inc.opened_at), inc.closed_at ? ms(inc.closed_at) : start + span, start, span);
        if (mark.parentNode !== barNode) barNode.append(mark);
      }
      const empty = barNode.querySelector(".tl-empty");
      if (!cam.incidents.length && !empty) barNode.append(el("span", { class: "tl-empty" }, "无事件 no incidents"));
      if (cam.incidents.length && empty) empty.remove();
    }
    for (const [id, node] of marks) if (!seenMarks.has(id)) { node.remove(); marks.delete(id); }
    for (const [id, node] of bands) if (!seenBands.has(id)) { node.remove(); bands.delete(id); }
    for (const [name, entry] of rows) if (!order.includes(entry.row)) { entry.row.remove(); rows.delete(name); }
    order.forEach((row, i) => { if (rowsBox.children[i] !== row) rowsBox.insertBefore(row, rowsBox.children[i] || null); });
    note.textContent = data.truncated ? "事件太多，只显示最新的 too many incidents: only the newest are shown" : "";
  }

  async function load() {
    try {
      render(await VM.api(`/api/timeline?hours=${hoursSelect.value}`));
    } catch (err) {
      note.textContent = `加载失败 could not load: ${err.message}`;
    }
  }

  hoursSelect.addEventListener("change", () => {
    history.replaceState(null, "", `/timeline?hours=${hoursSelect.value}`);
    load();
  });
  await load();
  let pending = null;
  VM.events({ incident: () => { clearTimeout(pending); pending = setTimeout(load, 400); } });
  setInterval(load, 30000);  // the window moves with the clock
})();
