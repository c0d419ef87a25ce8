// Login form: JSON to /auth/login, then back to the page that sent us here (same-site paths only).
"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const res = await fetch("/auth/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: document.getElementById("username").value,
                           password: document.getElementById("password").value }),
  });
  if (res.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.href = next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
  } else if (res.status === 429) {
    error.textContent = `尝试次数过多，请 ${res.headers.get("Retry-After") || "稍后"} 秒后再试 · Too many attempts, wait.`;
  } else {
    error.textContent = "用户名或密码错误 · Wrong user name or password";
  }
});
