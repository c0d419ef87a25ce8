// Users (admins only): accounts, add one, change a role, reset a password, delete (each confirmed inline), and the
// account changes trail. The server enforces every rule; this page shows its answers in words.
"use strict";
(async () => {
  const { el } = VM;
  const me = await VM.init();
  const ROLES = ["viewer", "operator", "admin"];
  const ACTION = { created: "创建 created", role_changed: "改角色 role changed",
                   password_reset: "重置密码 password reset", deleted: "删除 deleted" };
  const usersBody = document.querySelector("#users tbody");
  const auditBody = document.querySelector("#user-audit tbody");
  const addForm = document.getElementById("add-user");
  const addMessage = document.getElementById("add-message");
  const usersMessage = document.getElementById("users-message");
  let names = new Set();

  function adminsOnly() {
    document.getElementById("users-admin").hidden = true;
    document.getElementById("admins-only").hidden = false;
  }

  function say(node, text, ok) {
    node.textContent = text;
    node.classList.add("message");
    node.classList.toggle("ok", ok);
    node.classList.toggle("error", !ok);
  }

  const userPath = (name) => `/api/users/${encodeURIComponent(name)}`;
  const put = (name, body, headers = {}) => VM.api(userPath(name), { method: "PUT", headers, body: JSON.stringify(body) });
  const roleOptions = (selected) =>
    ROLES.map((r) => el("option", { value: r, selected: r === selected }, VM.roleName(r)));

  // Run one change: on failure say why in `where`; on success reload and say `done` in `doneWhere`.
  async function change(where, request, done, doneWhere = usersMessage) {
    try {
      await request();
    } catch (e) {
      if (e.status === 403) adminsOnly();
      say(where, e.message, false);
      return false;
    }
    usersMessage.textContent = addMessage.textContent = "";  // an older success would read as this one's
    await load();
    say(doneWhere, done, true);
    return true;
  }

  function passwordPair(label) {
    const attrs = { type: "password", maxlength: 1024, autocomplete: "new-password" };
    return [el("input", { ...attrs, class: "pw", "aria-label": `${label} 新密码 new password`, placeholder: "新密码 New password" }),
            el("input", { ...attrs, class: "pw2", "aria-label": `${label} 确认 confirm`, placeholder: "确认 Confirm" })];
  }

  function userRow(u) {
    const own = u.name === me.user;
    const message = el("p", { class: "row-message", role: "status" });

    const select = el("select", { class: "role-select", "aria-label": `角色 Role: ${u.name}` }, ...roleOptions(u.role));
    const saveRole = el("button", { type: "button", class: "save-role", disabled: true }, "保存 Save");
    select.addEventListener("change", () => { saveRole.disabled = select.value === u.role; });
    saveRole.addEventListener("click", async () => {
      const done = `${u.name}: 角色已改为 role changed to ${VM.roleName(select.value)}`;
      if (!await change(message, () => put(u.name, { role: select.value }), done)) {
        select.value = u.role;  // refused: show the role the account still has
        saveRole.disabled = true;
      }
    });

    const resetButton = el("button", { type: "button", class: "reset" }, "重置密码 Reset password");
    const [pw, pw2] = passwordPair(u.name);
    const resetForm = el("form", { class: "reset-form", hidden: true, novalidate: true },
      pw, pw2, el("button", { type: "submit", class: "primary" }, "设置 Set"),
      el("button", { type: "button", class: "cancel" }, "取消 Cancel"));
    resetButton.addEventListener("click", () => { resetForm.hidden = false; resetButton.hidden = true; pw.focus(); });
    resetForm.querySelector(".cancel").addEventListener("click", () => {
      resetForm.reset(); resetForm.hidden = true; resetButton.hidden = false; message.textContent = "";
    });
    resetForm.addEventListener("submit", (e) => {
      e.preventDefault();
      if (pw.value !== pw2.value) return say(message, "两次输入的密码不一致 the two passwords differ", false);
      change(message, () => put(u.name, { password: pw.value }),
        `${u.name}: 密码已重置 password reset` + (own ? " — 请重新登录 log in again" : ""));
    });

    const deleteButton = el("button", { type: "button", class: "delete" }, "删除 Delete");
    const confirm = el("span", { class: "confirm-delete", hidden: true },
      `确定删除 ${u.name}? Delete ${u.name}? `,
      el("button", { type: "button", class: "confirm danger" }, "确定删除 Yes, delete"),
      el("button", { type: "button", class: "cancel" }, "取消 Cancel"));
    deleteButton.addEventListener("click", () => { confirm.hidden = false; deleteButton.hidden = true; });
    confirm.querySelector(".cancel").addEventListener("click", () => {
      confirm.hidden = true; deleteButton.hidden = false; message.textContent = "";
    });
    confirm.querySelector(".confirm").addEventListener("click", () =>
      change(message, () => VM.api(userPath(u.name), { method: "DELETE" }), `${u.name}: 已删除 deleted`));

    return el("tr", { "data-user": u.name, "data-role": u.role, class: own ? "own" : "" },
      el("td", { class: "name" }, u.name, own ? el("span", { class: "you" }, " （你 you）") : ""),
      el("td", {}, el("span", { class: "role-change" }, select, saveRole)),
      el("td", { class: "when" }, u.created ? VM.time(u.created) : "—"),
      el("td", { class: "when" }, u.changed ? VM.time(u.changed) : "—"),
      el("td", {}, el("div", { class: "user-actions" }, resetButton, resetForm, deleteButton, confirm, message)));
  }

  function what(c) {
    const label = ACTION[c.action] || c.action;
    if (c.action === "role_changed") return `${label}: ${VM.roleName(c.old_role)} → ${VM.roleName(c.role)}`;
    return c.action === "created" ? `${label} (${VM.roleName(c.role)})` : label;
  }

  function auditRow(c) {
    return el("tr", { "data-action": c.action, "data-user": c.user },
      el("td", {}, VM.time(c.at)), el("td", {}, c.by ?? "命令行 command line"),
      el("td", { class: "audit-action" }, what(c)), el("td", {}, c.user));
  }

  async function load() {
    const [users, audit] = await Promise.all([VM.api("/api/users"), VM.api("/api/users/audit?limit=100")]);
    names = new Set(users.map((u) => u.name));
    usersBody.replaceChildren(...users.map(userRow));
    auditBody.replaceChildren(...audit.map(auditRow));
    if (!audit.length) auditBody.append(el("tr", {}, el("td", { class: "muted", colspan: 4 }, "暂无 none yet")));
  }

  if (me.role !== "admin") return adminsOnly();
  document.getElementById("new-role").append(...roleOptions("viewer"));
  try {
    await load();
  } catch (e) {
    if (e.status === 403) return adminsOnly();
    throw e;
  }
  document.getElementById("users-admin").hidden = false;

  addForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("new-name").value.trim();
    const role = document.getElementById("new-role").value;
    const password = document.getElementById("new-password").value;
    if (!name) return say(addMessage, "请填写用户名 enter a user name", false);
    if (names.has(name)) return say(addMessage, `${name}: 用户已存在 already exists (change it in its row)`, false);
    if (password !== document.getElementById("new-password2").value) {
      return say(addMessage, "两次输入的密码不一致 the two passwords differ", false);
    }
    // If-None-Match: * makes the server refuse rather than reset an account another admin just made.
    if (await change(addMessage, () => put(name, { role, password }, { "If-None-Match": "*" }),
      `${name}: 已添加 added as ${VM.roleName(role)}`, addMessage)) addForm.reset();
  });
})();
