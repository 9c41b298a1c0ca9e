// The sign-in form: sends the credentials as JSON (a cross-site page cannot), then goes to `next`.
"use strict";

// Only a path on this server: never another origin (`//host`, `/\host`, `https:`).
function nextPath() {
  const next = new URLSearchParams(window.location.search).get("next") || "/plugin-monitoring";
  return /^\/(?![\/\\])/.test(next) ? next : "/plugin-monitoring";
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in");
  const error = document.getElementById("error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = JSON.stringify({ username: form.username.value, password: form.password.value });
    try {
      const response = await fetch("/api/v1/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        credentials: "same-origin",
        body,
      });
      if (response.ok) {
        const session = await response.json();
        sessionStorage.setItem("plugwatch.csrf", session.csrf_token);
        window.location.assign(nextPath());
        return;
      }
      const problem = await response.json().catch(() => null);
      error.textContent = problem && problem.error ? problem.error.message : `Sign-in failed (HTTP ${response.status}).`;
    } catch (e) {
      error.textContent = "The server cannot be reached.";
    }
    error.hidden = false;
    form.password.value = "";
  });
});
