// Log-in and sign-up forms.

import { api } from "./api.js";
import { showError } from "./ui.js";

const form = document.getElementById("auth-form");

// The server only hands out same-site paths; checked again here because the browser, not the
// server, decides where a URL leads ("/\t/evil.example" is "//evil.example" to it).
function sameSitePath(next) {
  try {
    const url = new URL(next, window.location.origin);
    if (url.origin === window.location.origin) return url.pathname + url.search + url.hash;
  } catch {
    // not a URL at all
  }
  return "/projects";
}
const errorBox = document.getElementById("auth-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = form.dataset.mode;
  const email = form.elements.email ? form.elements.email.value.trim() : "";
  const password = form.elements.password.value;
  if ((mode !== "reset" && !email) || !password) {
    showError(errorBox, mode === "reset" ? "Enter a new password." : "Enter your email and a password.");
    return;
  }
  if (mode !== "login" && password.length < 8) {
    showError(errorBox, "Choose a password of at least 8 characters.");
    form.elements.password.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  showError(errorBox, null);
  try {
    const json = { login: { email, password },
      signup: { email, password, invite: form.elements.invite?.value || null },
      reset: { token: form.elements.token?.value || "", password } }[mode];
    await api(`/auth/${mode}`, { method: "POST", json });
    window.location.assign(sameSitePath(form.dataset.next || "/projects"));
  } catch (error) {
    const message = error.status === 401
      ? "That email and password do not match an account."
      : error.message;
    showError(errorBox, message);
    button.disabled = false;
  }
});
