// Accounts page (admins only): invite, disable/enable, reset passwords.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { ago } from "./format.js";
import { confirmDialog, showError, toast } from "./ui.js";

const userRows = document.getElementById("user-rows");
const inviteRows = document.getElementById("invite-rows");
const errorBox = document.getElementById("admin-error");
const inviteForm = document.getElementById("invite-form");

function showLink(title, help, link) {
  const card = document.getElementById("new-link");
  document.getElementById("new-link-title").textContent = title;
  document.getElementById("new-link-help").textContent =
    `${help} ${new Date(link.expires_at).toLocaleString()}.`;
  const input = document.getElementById("new-link-url");
  input.value = new URL(link.path, window.location.origin).href;
  card.hidden = false;
  input.focus();
  input.select();
}

async function act(work) {
  showError(errorBox, null);
  try {
    await work();
    await refresh();
  } catch (error) {
    showError(errorBox, error.message);
  }
}

function userRow(account, me) {
  const disabled = Boolean(account.disabled_at);
  const toggle = h("button", {
    class: `btn btn-sm ${disabled ? "btn-ghost" : "btn-danger-ghost"}`,
    type: "button",
    disabled: account.email === me,
    onclick: () => act(async () => {
      if (!disabled) {
        const sure = await confirmDialog({
          title: `Disable ${account.email}?`,
          message: "They are signed out at once and cannot log in until you enable the account again.",
          confirmLabel: "Disable",
        });
        if (!sure) return;
      }
      await api(`/admin/users/${account.id}/${disabled ? "enable" : "disable"}`, { method: "POST" });
      toast(`${account.email} ${disabled ? "enabled" : "disabled"}.`, "ok");
    }),
  }, disabled ? "Enable" : "Disable");
  const reset = h("button", {
    class: "btn btn-sm btn-ghost",
    type: "button",
    onclick: () => act(async () => {
      const link = await api(`/admin/users/${account.id}/reset`, { method: "POST" });
      showLink(`Password reset for ${account.email}`,
        "They were signed out everywhere. Send them this link; it works once, until", link);
    }),
  }, "Reset password");
  return h("tr", { dataset: { email: account.email } },
    h("th", { scope: "row" }, account.email),
    h("td", {}, account.is_admin ? "Admin" : "User"),
    h("td", {}, h("span", { class: `pill ${disabled ? "pill-bad" : "pill-ok"}` }, disabled ? "Disabled" : "Active")),
    h("td", {}, ago(account.created_at)),
    h("td", {}, reset, " ", toggle));
}

function inviteRow(invite) {
  const withdraw = h("button", {
    class: "btn btn-sm btn-danger-ghost",
    type: "button",
    onclick: () => act(() => api(`/admin/invites/${invite.id}`, { method: "DELETE" })),
  }, "Withdraw");
  return h("tr", {}, h("th", { scope: "row" }, invite.email),
    h("td", {}, new Date(invite.expires_at).toLocaleString()), h("td", {}, withdraw));
}

async function refresh() {
  const [accounts, invites, me] = await Promise.all([
    api("/admin/users"), api("/admin/invites"), api("/auth/me")]);
  replace(userRows, accounts.map((a) => userRow(a, me.email)));
  userRows.removeAttribute("aria-busy");
  replace(inviteRows, invites.length
    ? invites.map(inviteRow)
    : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No pending invitations.")));
}

inviteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const email = inviteForm.elements.email.value.trim();
  if (!email) return;
  act(async () => {
    const link = await api("/admin/invites", { method: "POST", json: { email } });
    inviteForm.reset();
    showLink(`Invitation for ${link.email}`,
      "Send this link to them; it lets this one email sign up, once, until", link);
  });
});

refresh().catch((error) => showError(errorBox, error.message));
