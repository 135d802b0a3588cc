// Log-in and sign-up forms: every problem is shown at once, next to its field, in words.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { showError } from "./ui.js";

const form = document.getElementById("auth-form");
const errorBox = document.getElementById("auth-error");
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MIN_PASSWORD = 8;

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

/** What is wrong with the form before it is sent, by field name. */
function check(mode, email, password) {
  const problems = {};
  if (mode !== "reset") {
    if (!email) problems.email = "Enter your email address.";
    else if (!EMAIL.test(email)) problems.email = "That does not look like an email address: it needs a name, an @ and a domain, like ana@example.com.";
  }
  if (!password) problems.password = mode === "login" ? "Enter your password." : "Choose a password.";
  else if (mode !== "login" && password.length < MIN_PASSWORD) {
    problems.password = `Choose a password of at least ${MIN_PASSWORD} characters (this one has ${password.length}).`;
  }
  return problems;
}

/** The server's field errors in the same words: ``{loc: ["body", "email"], msg}`` → email. */
function serverProblems(error) {
  const problems = {};
  // A refusal about the password as a whole (too easy to guess) belongs at that field too.
  if (error.status === 422 && !(error.errors || []).length && /password/i.test(error.message)) {
    problems.password = error.message;
  }
  for (const item of error.errors || []) {
    const field = [...(item.loc || [])].reverse().find((part) => part === "email" || part === "password");
    if (!field || problems[field]) continue;
    const msg = String(item.msg || "").replace(/^Value error, /, "");
    problems[field] = field === "email"
      ? "That does not look like an email address: it needs a name, an @ and a domain, like ana@example.com."
      : msg.replace(/^password /i, "The password ").replace(/^./, (c) => c.toUpperCase());
  }
  return problems;
}

function show(problems) {
  for (const name of ["email", "password"]) {
    const input = form.elements[name];
    if (!input) continue;
    const slot = document.getElementById(`${name}-error`);
    const message = problems[name];
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    slot.hidden = !message;
    replace(slot, message || "");
  }
  const messages = Object.values(problems);
  if (messages.length > 1) {
    showError(errorBox, h("span", {}, `Please fix ${messages.length} things:`, h("ul", {}, messages.map((m) => h("li", {}, m)))));
  } else showError(errorBox, messages[0] || null);
  const first = ["email", "password"].find((name) => problems[name]);
  if (first) form.elements[first].focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = form.dataset.mode;
  const email = form.elements.email ? form.elements.email.value.trim() : "";
  const password = form.elements.password.value;
  const problems = check(mode, email, password);
  show(problems);
  if (Object.keys(problems).length) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const json = { login: { email, password },
      signup: { email, password, invite: form.elements.invite?.value || null },
      reset: { token: form.elements.token?.value || "", password } }[mode];
    await api(`/auth/${mode}`, { method: "POST", json });
    window.location.assign(sameSitePath(form.dataset.next || "/projects"));
  } catch (error) {
    const fields = serverProblems(error);
    if (Object.keys(fields).length) show(fields);
    else {
      show({});
      showError(errorBox, error.status === 401 ? "That email and password do not match an account." : error.message);
    }
    button.disabled = false;
  }
});
