// Login form: JSON to /auth/login, then back to the page that sent us here (paths on this site only).
"use strict";

// A path on this site, or "/": one leading "/", no backslash, whitespace or control characters (also after
// percent-decoding: browsers drop tabs and newlines from URLs, so "/\t/evil.example" would become "//evil.example").
function safeNext(raw) {
  if (!raw) return "/";
  let decoded;
  try { decoded = decodeURIComponent(raw); } catch (_) { return "/"; }
  for (const value of [raw, decoded]) {
    if (!value.startsWith("/") || value.startsWith("//") || value.includes("\\")) return "/";
    if (/[\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/.test(value)) return "/";
  }
  const url = new URL(raw, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const next = safeNext(new URLSearchParams(location.search).get("next"));
  let res;
  try {
    res = await fetch("/auth/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: document.getElementById("username").value,
                             password: document.getElementById("password").value, next }),
    });
  } catch (_) {
    error.textContent = "服务不可用，请稍后再试 · Service unavailable, try again shortly";
    return;
  }
  if (res.ok) {
    const body = await res.json().catch(() => ({}));
    location.href = safeNext(typeof body.next === "string" ? body.next : next);
  } else if (res.status === 429) {
    error.textContent = `尝试次数过多，请 ${res.headers.get("Retry-After") || "稍后"} 秒后再试 · Too many attempts, wait.`;
  } else if (res.status >= 500) {
    error.textContent = "服务不可用，请稍后再试 · Service unavailable, try again shortly";
  } else {
    error.textContent = "用户名或密码错误 · Wrong user name or password";
  }
});
