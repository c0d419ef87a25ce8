// Shared helpers: API calls with the CSRF header, the logged-in user, live events, safe DOM building.
"use strict";
const VM = (() => {
  let me = null;

  async function api(path, options = {}) {
    const opts = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    if (opts.method && opts.method !== "GET") {
      opts.headers["X-CSRF-Token"] = me ? me.csrf_token : "";
      if (opts.body !== undefined) opts.headers["Content-Type"] = "application/json";
    }
    const res = await fetch(path, opts);
    if (res.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("login required");
    }
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error(errorText(data && data.detail, res.status));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // The one place that turns a server error into words: a text `detail`, or FastAPI's 422 list of {loc, msg}
  // ("password: String should have at least 1 character"), never a bare "HTTP 422" when the server said why.
  function errorText(detail, status) {
    if (typeof detail === "string" && detail) return detail;
    const items = Array.isArray(detail) ? detail.filter((d) => d && typeof d.msg === "string") : [];
    if (!items.length) return `HTTP ${status}`;
    return items.map((d) => {
      const where = (Array.isArray(d.loc) ? d.loc : []).filter((p) => !["body", "path", "query"].includes(p));
      const msg = d.msg.replace(/^Value error, /, "");
      return where.length ? `${where.join(".")}: ${msg}` : msg;
    }).join("; ");
  }

  const role = () => (me ? me.role : null);

  async function init() {
    me = await api("/api/me");
    document.getElementById("me").textContent = `${me.user} (${roleName(me.role)})`;
    const usersLink = document.getElementById("nav-users");
    if (usersLink) usersLink.hidden = me.role !== "admin";
    document.getElementById("logout").addEventListener("click", async () => {
      await api("/auth/logout", { method: "POST" }).catch(() => null);
      location.href = "/login";
    });
    return me;
  }

  function events(handlers) {
    const dot = document.getElementById("live");
    const source = new EventSource("/api/events");
    source.onopen = () => dot.classList.add("on");
    source.onerror = () => dot.classList.remove("on");
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
    }
    return source;
  }

  // el("td", {class: "x"}, "text", childNode): never parses HTML, so data cannot inject markup.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  }

  const STATUS = { open: "进行中 open", closed: "已结束 closed", acknowledged: "已确认 acknowledged",
                   false_alarm: "误报 false alarm" };
  const KIND = { gathering: "聚集 gathering", camera_offline: "离线 camera offline",
                 checkpoint_unstaffed: "无人值守 unstaffed" };
  const ROLE = { viewer: "查看 viewer", operator: "值班员 operator", admin: "管理员 admin" };
  // Audit trail actions (lower case after the Chinese, like the states above).
  const ACTION = { acknowledge: "确认 acknowledged", false_alarm: "误报 false alarm", note: "备注 note",
                   reviewed: "已审阅 reviewed" };
  const statusName = (s) => STATUS[s] || s;
  const actionName = (a) => ACTION[a] || a;
  const kindName = (k) => KIND[k] || k;
  const roleName = (r) => ROLE[r] || r;

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString("zh-CN", { hour12: false });
  }

  function duration(s) {
    if (s === null || s === undefined) return "进行中 ongoing";
    s = Math.round(s);
    return s >= 60 ? `${Math.floor(s / 60)}分 ${s % 60}秒` : `${s}秒`;
  }

  function incidentRow(inc) {
    const thumb = inc.snapshot_url ? el("img", { src: inc.snapshot_url, alt: "", class: "thumb", loading: "lazy" }) : "";
    const anns = inc.announcements_ok + inc.announcements_failed === 0 ? "—"
      : `✔ ${inc.announcements_ok}` + (inc.announcements_failed ? ` ✘ ${inc.announcements_failed}` : "");
    const link = el("a", { href: `/incidents/${encodeURIComponent(inc.id)}`, class: "open-link" }, time(inc.opened_at));
    return el("tr", { "data-id": inc.id, "data-status": inc.status, class: `status-${inc.status}` },
      el("td", {}, thumb), el("td", {}, link), el("td", {}, inc.camera + (inc.zone ? ` / ${inc.zone}` : "")),
      el("td", {}, kindName(inc.kind)), el("td", { class: "status-cell" }, statusName(inc.status)),
      el("td", {}, duration(inc.duration_s)), el("td", {}, inc.peak_count),
      el("td", { class: inc.announcements_failed ? "bad" : "" }, anns));
  }

  return { api, errorText, init, events, el, time, duration, statusName, kindName, actionName, roleName, incidentRow,
           role, get me() { return me; } };
})();
