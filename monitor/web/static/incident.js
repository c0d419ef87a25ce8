// Incident review: clip, snapshot, facts, timeline, audit trail; operators act, everyone sees changes live.
"use strict";
(async () => {
  const { el } = VM;
  const me = await VM.init();
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const canAct = me.role === "operator" || me.role === "admin";
  const error = document.getElementById("action-error");
  let clipShown = null;
  // H.265 clips: Chromium plays HEVC only where the platform decodes it in hardware (canPlayType says so); other
  // browsers get the H.264 copy the server makes once, polled here while it is being made.
  const playsHevc = document.createElement("video").canPlayType('video/mp4; codecs="hvc1.1.6.L93.B0"') !== "";
  const clipStatus = document.getElementById("clip-status");

  function render(inc) {
    document.title = `${inc.camera} · ${VM.kindName(inc.kind)}`;
    document.getElementById("inc-title").textContent = `${inc.camera}${inc.zone ? " / " + inc.zone : ""} · ${VM.kindName(inc.kind)}`;
    const status = document.getElementById("inc-status");
    status.textContent = VM.statusName(inc.status);
    status.className = `status status-${inc.status}`;
    status.dataset.status = inc.status;

    const noClip = document.getElementById("no-clip");
    noClip.hidden = !!inc.clip_url;
    noClip.textContent = inc.media_expired ? "录像已过期删除 clip expired" : "录像尚未生成 no clip yet";
    const original = document.getElementById("clip-original");
    original.hidden = !inc.clip_url;
    if (!inc.clip_url) {
      document.getElementById("clip").hidden = clipStatus.hidden = true;
      clipShown = null;
    } else if (clipShown !== inc.clip_url) {
      clipShown = inc.clip_url;
      original.href = inc.clip_url;
      original.download = `incident-${id}.mp4`;
      showClip(inc.clip_url);
    }
    const snap = document.getElementById("snapshot");
    snap.hidden = !inc.snapshot_url;
    if (inc.snapshot_url && snap.getAttribute("src") !== inc.snapshot_url) snap.src = inc.snapshot_url;

    const facts = [["开始 Opened", VM.time(inc.opened_at)], ["结束 Closed", VM.time(inc.closed_at) || "进行中 ongoing"],
      ["时长 Duration", VM.duration(inc.duration_s)], ["峰值人数 Peak", inc.peak_count], ["规则 Rule", inc.rule],
      ["编号 ID", inc.id]];
    document.getElementById("inc-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

    document.getElementById("actions").hidden = !canAct;
    document.getElementById("ack").disabled = inc.status === "acknowledged";
    document.getElementById("false-alarm").disabled = inc.status === "false_alarm";

    document.getElementById("timeline").replaceChildren(...inc.timeline.map((t) =>
      el("li", { class: t.ok === false ? "bad" : "" }, el("time", {}, VM.time(t.at)), " ", t.what)));
    const audit = document.querySelector("#audit tbody");
    audit.replaceChildren(...inc.audit.map((a) =>
      el("tr", {}, el("td", {}, VM.time(a.at)), el("td", {}, a.user),
        el("td", { class: "audit-action", "data-action": a.action }, VM.actionName(a.action)),
        el("td", { class: "note" }, a.note || ""))));
    if (!inc.audit.length) audit.append(el("tr", {}, el("td", { class: "muted", colspan: 4 }, "暂无 none yet")));
  }

  function play(url) {
    const video = document.getElementById("clip");
    clipStatus.hidden = true;
    video.hidden = false;
    if (video.getAttribute("src") !== url) video.src = url;
  }

  async function showClip(clipUrl, prepare = false) {
    const base = `/api/incidents/${encodeURIComponent(id)}/playable`;
    let info;
    try {
      info = await VM.api(prepare ? `${base}?prepare=true` : base);
    } catch (e) {
      if (clipShown === clipUrl) play(clipUrl);  // no config on this server: the original, as before
      return;
    }
    if (clipShown !== clipUrl) return;  // the clip changed (or expired) meanwhile
    if (info.playable_state === "not_needed" || (info.codec === "hevc" && playsHevc)) return play(info.original_url);
    if (info.playable_state === "ready") return play(info.url);
    clipStatus.hidden = false;
    if (info.playable_state === "failed") {
      clipStatus.textContent = `无法转码 No playable copy: ${info.error} — 请下载原始录像 download the original`;
      return;
    }
    clipStatus.textContent = `转码中 Preparing a playable copy… ${info.percent || 0}%`;
    setTimeout(() => showClip(clipUrl, true), prepare ? 1000 : 0);
  }

  async function act(action, note) {
    error.textContent = "";
    try {
      render(await VM.api(`/api/incidents/${encodeURIComponent(id)}/${action}`,
        { method: "POST", body: JSON.stringify({ note: note || null }) }));
      return true;
    } catch (e) {
      error.textContent = e.message;
      return false;
    }
  }

  document.getElementById("ack").addEventListener("click", () => act("acknowledge"));
  document.getElementById("false-alarm").addEventListener("click", () => act("false_alarm"));
  document.getElementById("note-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const note = document.getElementById("note");
    if (note.value.trim() && await act("note", note.value.trim())) note.value = "";
  });

  // Blurred export: started on the server, polled here until the download link is ready.
  const exportStatus = document.getElementById("export-status");
  async function showExport(state) {
    if (state.state === "ready") {
      exportStatus.replaceChildren(VM.el("a", { href: state.url, id: "export-link", download: "" }, "下载 Download"));
    } else if (state.state === "running") {
      exportStatus.textContent = "正在导出… Exporting…";
      setTimeout(async () => showExport(await VM.api(`/api/incidents/${encodeURIComponent(id)}/export`)), 2000);
    } else if (state.state === "failed") {
      exportStatus.textContent = `导出失败 Export failed: ${state.error}`;
    }
  }
  document.getElementById("export").addEventListener("click", async () => {
    try {
      showExport(await VM.api(`/api/incidents/${encodeURIComponent(id)}/export`, { method: "POST" }));
    } catch (e) {
      exportStatus.textContent = e.message;
    }
  });
  VM.api(`/api/incidents/${encodeURIComponent(id)}/export`).then(showExport).catch(() => null);

  render(await VM.api(`/api/incidents/${encodeURIComponent(id)}`));
  VM.events({ incident: async (e) => { if (e.id === id) render(await VM.api(`/api/incidents/${encodeURIComponent(id)}`)); } });
})();
