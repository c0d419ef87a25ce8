// Scheduled broadcasts: the schedule with each one's next and last play, and the play log (every speaker's result).
"use strict";
(async () => {
  const { el } = VM;
  await VM.init();
  const DAYS = { mon: "一 Mon", tue: "二 Tue", wed: "三 Wed", thu: "四 Thu", fri: "五 Fri", sat: "六 Sat", sun: "日 Sun" };
  const schedule = document.querySelector("#broadcast-list tbody");
  const log = document.querySelector("#play-log tbody");

  const outcome = (play) => play.ok
    ? el("span", { class: "ok" }, "✔ 已播放 played")
    : el("span", { class: "bad" }, "✘ 失败 failed");

  function results(play) {
    return el("ul", { class: "results" }, ...play.results.map((r) => el("li", { class: r.ok ? "ok" : "bad" },
      `${r.ok ? "✔" : "✘"} ${r.speaker}` + (r.error ? `: ${r.error}` : ""))));
  }

  function days(b) {
    if (b.dates.length) return b.dates.join(", ");
    return b.days.length === 7 ? "每天 daily" : b.days.map((d) => DAYS[d] || d).join(" ");
  }

  function content(b) {
    return b.text !== null ? el("span", { class: "spoken" }, `“${b.text}” (${b.voice})`) : b.audio;
  }

  function scheduleRow(b) {
    const last = b.last ? el("span", {}, VM.time(b.last.slot_at), " ", outcome(b.last)) : "—";
    return el("tr", { "data-name": b.name, class: b.enabled ? "" : "disabled" },
      el("td", {}, b.name), el("td", {}, content(b)), el("td", {}, b.speakers.join(", ")),
      el("td", {}, `${b.at.join(", ")} (${b.timezone})`), el("td", {}, days(b)),
      el("td", {}, b.repeat > 1 ? `${b.repeat} × (${b.gap_s}秒 s)` : "1"),
      el("td", { class: "next" }, b.enabled ? (VM.time(b.next_at) || "—") : "停用 disabled"),
      el("td", { class: "last" }, last));
  }

  function playRow(p) {
    return el("tr", { "data-broadcast": p.broadcast, class: p.ok ? "" : "failed" },
      el("td", {}, VM.time(p.slot_at)), el("td", {}, p.broadcast), el("td", {}, `${p.repeat}/${p.repeats}`),
      el("td", {}, outcome(p)), el("td", {}, results(p)));
  }

  async function load() {
    const data = await VM.api("/api/broadcasts");
    schedule.replaceChildren(...data.broadcasts.map(scheduleRow));
    if (!data.broadcasts.length) {
      schedule.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "没有定时广播 no broadcasts configured")));
    }
    log.replaceChildren(...data.plays.map(playRow));
    if (!data.plays.length) log.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "还没有播放 nothing played yet")));
  }

  await load();
  setInterval(() => load().catch(() => null), 10000);
})();
