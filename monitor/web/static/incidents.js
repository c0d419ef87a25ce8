// Incident list: filters and paging live in the URL (shareable, back button works); rows update live.
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const form = document.getElementById("filters");
  const body = document.querySelector("#incident-list tbody");
  const params = new URLSearchParams(location.search);
  const PAGE = 25;

  const cameras = await VM.api("/api/cameras");
  document.getElementById("f-camera").append(...cameras.map((c) => el("option", { value: c.name }, c.name)));
  for (const key of ["camera", "kind", "status", "since", "until"]) form.elements[key].value = params.get(key) || "";

  function query(offset) {
    const q = new URLSearchParams();
    for (const key of ["camera", "kind", "status", "since", "until"]) if (form.elements[key].value) q.set(key, form.elements[key].value);
    if (offset) q.set("offset", offset);
    return q;
  }

  let offset = Number(params.get("offset")) || 0;
  async function load() {
    const q = query(offset);
    q.set("limit", PAGE);
    const page = await VM.api(`/api/incidents?${q}`);
    body.replaceChildren(...page.items.map(VM.incidentRow));
    if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "没有事件 no incidents")));
    document.getElementById("newer").disabled = offset === 0;
    document.getElementById("older").disabled = page.next_offset === null;
    document.getElementById("page-info").textContent = `${offset + 1}–${offset + page.items.length}`;
  }

  function go(newOffset) {
    offset = Math.max(0, newOffset);
    history.replaceState(null, "", `/incidents?${query(offset)}`);
    load();
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); go(0); });
  document.getElementById("newer").addEventListener("click", () => go(offset - PAGE));
  document.getElementById("older").addEventListener("click", () => go(offset + PAGE));
  await load();

  VM.events({
    incident: (e) => {
      const row = body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
      if (row && e.incident) row.replaceWith(VM.incidentRow(e.incident));
      else if (e.type === "incident_opened" && offset === 0) load();
    },
  });
})();
