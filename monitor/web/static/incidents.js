// Incident list: filters and paging live in the URL (shareable, back button works); rows update live.
// Grouped (default): one row per episode (a rule's quick repeats), expandable; operators select rows or whole
// episodes and review them in bulk.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const form = document.getElementById("filters");
  const table = document.getElementById("incident-list");
  const body = table.querySelector("tbody");
  const params = new URLSearchParams(location.search);
  const PAGE = 25;
  const BULK_MAX = 500;
  const FILTERS = ["camera", "kind", "status", "since", "until"];
  const canAct = VM.role() !== "viewer";
  table.classList.toggle("can-act", canAct);
  document.getElementById("bulk").hidden = !canAct;

  const cameras = await VM.api("/api/cameras");
  document.getElementById("f-camera").append(...cameras.map((c) => el("option", { value: c.name }, c.name)));
  for (const key of FILTERS) form.elements[key].value = params.get(key) || "";
  form.elements.group.checked = params.get("group") !== "0";
  const grouped = () => form.elements.group.checked;

  function query(offset) {
    const q = new URLSearchParams();
    for (const key of FILTERS) if (form.elements[key].value) q.set(key, form.elements[key].value);
    if (!grouped()) q.set("group", "0");
    if (offset) q.set("offset", offset);
    return q;
  }

  // Selection: incident ids; an episode's box stands for all of its incidents.
  const selected = new Set();
  const expanded = new Set();
  const statusOf = new Map();
  let boxes = [];

  function syncPicks() {
    for (const [box, ids] of boxes) {
      const n = ids.filter((id) => selected.has(id)).length;
      box.checked = n > 0 && n === ids.length;
      box.indeterminate = n > 0 && n < ids.length;
    }
    document.getElementById("bulk-count").textContent = `已选 ${selected.size} selected`;
    for (const id of ["bulk-reviewed", "bulk-false-alarm", "bulk-clear"]) {
      document.getElementById(id).disabled = selected.size === 0;
    }
  }

  function pickCell(ids, label) {
    const box = el("input", { type: "checkbox", class: "pick-box", "aria-label": label });
    box.addEventListener("change", () => {
      for (const id of ids) if (box.checked) selected.add(id); else selected.delete(id);
      syncPicks();
    });
    boxes.push([box, ids]);
    return el("td", { class: "pick" }, box);
  }

  function incidentRow(inc, episodeId) {
    statusOf.set(inc.id, inc.status);
    const row = VM.incidentRow(inc);
    row.prepend(pickCell([inc.id], "选择 select"));
    if (episodeId) { row.classList.add("member"); row.dataset.memberOf = episodeId; }
    return row;
  }

  // An episode as one row: the list row of a summary spanning it, with a "×N" button that shows its incidents.
  function episodeRows(ep) {
    if (ep.count === 1) return [incidentRow(ep.incidents[0])];
    for (const inc of ep.incidents) statusOf.set(inc.id, inc.status);
    const newest = ep.incidents[0];
    const row = VM.incidentRow({ ...ep, duration_s: ep.span_s, snapshot_url: newest.snapshot_url });
    row.removeAttribute("data-id");
    row.dataset.episode = ep.id;
    row.dataset.count = ep.count;
    row.classList.add("episode");
    const open = expanded.has(ep.id);
    const toggle = el("button", { type: "button", class: "expand", "aria-expanded": String(open),
                                  title: open ? "收起 collapse" : "展开 expand" }, `×${ep.count}`);
    toggle.addEventListener("click", () => {
      if (expanded.has(ep.id)) expanded.delete(ep.id); else expanded.add(ep.id);
      render(current);
    });
    row.children[1].append(el("span", { class: "span-end" }, ` – ${VM.time(newest.opened_at)}`), toggle);
    row.prepend(pickCell(ep.incidents.map((i) => i.id), `选择事件组 select episode ×${ep.count}`));
    return [row, ...(open ? ep.incidents.map((inc) => incidentRow(inc, ep.id)) : [])];
  }

  let current = null;
  function render(page) {
    current = page;
    boxes = [];
    statusOf.clear();
    const rows = page.grouped ? page.items.flatMap(episodeRows) : page.items.map((inc) => incidentRow(inc));
    body.replaceChildren(...rows);
    if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "没有事件 no incidents")));
    syncPicks();
  }

  let offset = Number(params.get("offset")) || 0;
  async function load() {
    const q = query(offset);
    q.set("limit", PAGE);
    q.delete("group");
    const isGrouped = grouped();
    const page = await VM.api(`/api/${isGrouped ? "episodes" : "incidents"}?${q}`);
    render({ ...page, grouped: isGrouped });
    document.getElementById("newer").disabled = offset === 0;
    document.getElementById("older").disabled = page.next_offset === null;
    document.getElementById("page-info").textContent = `${offset + 1}–${offset + page.items.length}`;
  }

  function go(newOffset) {
    offset = Math.max(0, newOffset);
    selected.clear();
    history.replaceState(null, "", `/incidents?${query(offset)}`);
    load();
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); go(0); });
  form.elements.group.addEventListener("change", () => go(0));
  document.getElementById("newer").addEventListener("click", () => go(offset - PAGE));
  document.getElementById("older").addEventListener("click", () => go(offset + PAGE));
  document.getElementById("pick-all").addEventListener("change", (e) => {
    for (const [, ids] of boxes) for (const id of ids) if (e.target.checked) selected.add(id); else selected.delete(id);
    syncPicks();
  });

  // Bulk review: each incident gets the action its own page would give it (incidents already so are skipped).
  const result = document.getElementById("bulk-result");
  async function bulk(action, target) {
    const ids = [...selected].filter((id) => statusOf.get(id) !== target);
    const skipped = selected.size - ids.length;
    let done = 0;
    const failed = [];
    try {
      for (let i = 0; i < ids.length; i += BULK_MAX) {
        const answer = await VM.api("/api/incidents/bulk", { method: "POST",
          body: JSON.stringify({ ids: ids.slice(i, i + BULK_MAX), action }) });
        done += answer.done;
        failed.push(...answer.results.filter((r) => !r.ok).map((r) => `${r.id}: ${r.error}`));
      }
      selected.clear();
      result.textContent = `${done} 已处理 done` + (skipped ? `, ${skipped} 原已如此 already so` : "")
        + (failed.length ? `, ${failed.length} 失败 failed (${failed.slice(0, 3).join("; ")})` : "");
    } catch (err) {
      result.textContent = `失败 failed: ${err.message}`;
    }
    await load();
  }
  document.getElementById("bulk-reviewed").addEventListener("click", () => bulk("acknowledge", "acknowledged"));
  document.getElementById("bulk-false-alarm").addEventListener("click", () => bulk("false_alarm", "false_alarm"));
  document.getElementById("bulk-clear").addEventListener("click", () => { selected.clear(); syncPicks(); });

  await load();

  // Live: a shown incident changed, or a new one on the first page. Grouped rows are rebuilt from the server
  // (a change may join or split episodes), at most a few times a second.
  let reload = null;
  const later = () => { clearTimeout(reload); reload = setTimeout(load, 400); };
  VM.events({
    incident: (e) => {
      const row = body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
      const shown = row || statusOf.has(e.id);
      if (!grouped() && row && e.incident) {
        const fresh = incidentRow(e.incident, row.dataset.memberOf);
        fresh.querySelector(".pick-box").checked = selected.has(e.id);
        row.replaceWith(fresh);
      } else if (shown || (e.type === "incident_opened" && offset === 0)) later();
    },
  });
})();
