// Speakers: checked health, last announcement, last test, and a test button for operators.
// Rows are built once per speaker and updated in place (every few seconds and when an announcement is recorded),
// so a test result shown inline or a hovered link is not swept away by a refresh.
"use strict";
(async () => {
  const { el } = VM;
  const me = await VM.init();
  const canTest = me.role === "operator" || me.role === "admin";
  const body = document.querySelector("#speakers tbody");
  const rows = new Map();  // speaker name -> { node, parts, keys }
  const HEALTH = { ok: "正常 ok", failed: "故障 failed", unverifiable: "无法验证 unverifiable", unknown: "未知 unknown" };
  const KIND = { rtp: "RTP", sip: "SIP", http: "HTTP", onvif: "ONVIF", local: "本机 local" };

  document.querySelector("#speakers th.test-col").hidden = !canTest;

  const setText = (node, value) => { const s = String(value ?? ""); if (node.textContent !== s) node.textContent = s; };
  // Replace a cell's content only when what it shows changed (key), so links and focus survive refreshes.
  function setContent(row, name, key, make) {
    if (row.keys[name] === key) return;
    row.keys[name] = key;
    row.parts[name].replaceChildren(...make());
  }

  function build(spk) {
    const parts = {
      kind: el("td"),
      target: el("td", { class: "target" }),
      users: el("td"),
      health: el("span", { class: "health", "data-testid": "speaker-health" }),
      busy: el("span", { class: "busy", "data-testid": "speaker-busy", role: "status", hidden: "" }),
      problem: el("td", { class: "problem", "data-testid": "speaker-problem" }),
      announced: el("td", { "data-testid": "speaker-last" }),
      tested: el("td", { "data-testid": "speaker-tested" }),
      result: el("span", { class: "result", "data-testid": "test-result", role: "status" }),
    };
    const cells = [el("td", {}, el("b", {}, spk.name)), parts.kind, parts.target, parts.users,
      el("td", {}, parts.health, parts.busy), parts.problem, parts.announced, parts.tested];
    if (canTest) {
      const button = el("button", { type: "button", class: "test", "data-testid": "test-button" }, "测试 Test");
      button.addEventListener("click", () => test(spk.name, button, parts.result));
      cells.push(el("td", {}, button, parts.result));
    }
    const node = el("tr", { "data-speaker": spk.name, "data-testid": "speaker-row" }, ...cells);
    return { node, parts, keys: {} };
  }

  function outcome(ok) {
    return ok ? el("span", { class: "last ok" }, "✔ 成功 ok") : el("span", { class: "last bad" }, "✘ 失败 failed");
  }

  function announcedCell(last) {
    if (!last) return ["—"];
    const out = [VM.time(last.at), " ", outcome(last.ok)];
    if (last.incident_id) {
      out.push(" ", el("a", { href: `/incidents/${encodeURIComponent(last.incident_id)}`, class: "incident-link" },
        `事件 incident${last.camera ? ` (${last.camera})` : ""}`));
    }
    if (last.error) out.push(el("span", { class: "result bad" }, last.error));
    return out;
  }

  function testedCell(last) {
    if (!last) return ["—"];
    const out = [VM.time(last.at), " ", outcome(last.ok), last.user ? ` · ${last.user}` : ""];
    if (last.error) out.push(el("span", { class: "result bad" }, last.error));
    return out;
  }

  function show(spk) {
    let row = rows.get(spk.name);
    if (!row) { row = build(spk); rows.set(spk.name, row); body.append(row.node); }
    const { node, parts } = row;
    const state = spk.health.state;
    if (node.dataset.state !== state) node.dataset.state = state;
    setText(parts.kind, KIND[spk.kind] || spk.kind);
    setText(parts.target, spk.target);
    const users = [spk.cameras.length ? `摄像头 ${spk.cameras.join(", ")}` : "",
                   spk.groups.length ? `组 group ${spk.groups.join(", ")}` : ""].filter(Boolean).join(" · ");
    setText(parts.users, users || "—");
    if (parts.health.dataset.state !== state) parts.health.dataset.state = state;
    setText(parts.health, HEALTH[state] || state);
    parts.health.title = spk.health.checked_at ? `检查于 checked ${VM.time(spk.health.checked_at)}` : "";
    setText(parts.problem, spk.health.problem || "");
    // in use now: an operator talking (announcements wait for the end), or a test
    const busy = spk.busy;
    parts.busy.hidden = !busy;
    parts.busy.dataset.what = busy ? busy.what : "";
    setText(parts.busy, !busy ? "" : busy.what === "talk"
      ? `🎙 喊话中 talking: ${busy.user || "?"}${busy.since ? ` (${VM.time(busy.since)})` : ""}`
      : "测试中 testing");
    const last = spk.last_announcement;
    parts.announced.dataset.ok = last ? (last.ok ? "1" : "0") : "";
    setContent(row, "announced", JSON.stringify(last), () => announcedCell(last));
    setContent(row, "tested", JSON.stringify(spk.last_test), () => testedCell(spk.last_test));
  }

  const error = document.getElementById("speakers-error");
  async function load() {
    try {
      const speakers = await VM.api("/api/speakers");
      for (const spk of speakers) show(spk);
      const names = new Set(speakers.map((s) => s.name));
      for (const [name, row] of rows) if (!names.has(name)) { row.node.remove(); rows.delete(name); }
      document.getElementById("speakers-none").hidden = speakers.length > 0;
      error.hidden = true;
    } catch (e) {
      error.hidden = false;
      setText(error, `无法加载 could not load: ${e.message}`);
    }
  }

  async function test(name, button, result) {
    button.disabled = true;
    result.className = "result";
    result.dataset.ok = "";
    setText(result, "播放中 playing…");
    try {
      const res = await VM.api(`/api/speakers/${encodeURIComponent(name)}/test`, { method: "POST" });
      result.className = `result ${res.ok ? "ok" : "bad"}`;
      result.dataset.ok = res.ok ? "1" : "0";
      setText(result, res.ok ? `✔ 已播放 played (${res.duration_s} s)` : `✘ ${res.error}`);
    } catch (e) {
      result.className = "result bad";
      result.dataset.ok = "0";
      setText(result, `✘ ${e.message}`);
    } finally {
      button.disabled = false;
      load();
    }
  }

  await load();
  setInterval(load, 5000);
  VM.events({ incident: (e) => { if (e.type === "announcement") load(); } });
})();
