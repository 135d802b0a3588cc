// Toasts and small modal dialogs built on <dialog> (focus trap and Esc come with it).

import { h, icon, replace } from "./dom.js";

export function toast(message, kind = "info", timeoutMs = 4000) {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = h("div", { class: `toast toast-${kind}` }, message);
  region.append(item);
  setTimeout(() => item.classList.add("toast-leaving"), timeoutMs);
  setTimeout(() => item.remove(), timeoutMs + 300);
}

function modal({ title, body, actions }) {
  const dialog = h("dialog", { class: "dialog dialog-small", "aria-labelledby": "modal-title" });
  const form = h("form", { method: "dialog" },
    h("header", { class: "dialog-head" }, h("h2", { id: "modal-title" }, title)),
    h("div", { class: "dialog-body" }, body),
    h("footer", { class: "dialog-foot" }, actions));
  dialog.append(form);
  document.body.append(dialog);
  return dialog;
}

/** Ask before something destructive; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = "Delete", cancelLabel = "Cancel", danger = true }) {
  return new Promise((resolve) => {
    const ok = h("button", { class: `btn ${danger ? "btn-danger" : "btn-primary"}`, value: "ok" }, confirmLabel);
    const cancel = h("button", { class: "btn btn-ghost", value: "cancel", autofocus: true }, cancelLabel);
    const dialog = modal({ title, body: h("p", {}, message), actions: [cancel, ok] });
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    dialog.showModal();
  });
}

/** Ask for one line of text; resolves the trimmed text, or null when cancelled. */
export function promptDialog({ title, label, value = "", confirmLabel = "Save", maxLength = 200 }) {
  return new Promise((resolve) => {
    const input = h("input", { id: "modal-input", value, maxlength: maxLength, required: true, autocomplete: "off" });
    const field = h("div", { class: "field" }, h("label", { for: "modal-input" }, label), input);
    const ok = h("button", { class: "btn btn-primary", value: "ok" }, confirmLabel);
    const cancel = h("button", { class: "btn btn-ghost", value: "cancel", formnovalidate: true }, "Cancel");
    const dialog = modal({ title, body: field, actions: [cancel, ok] });
    dialog.addEventListener("close", () => {
      const text = input.value.trim();
      resolve(dialog.returnValue === "ok" && text ? text : null);
      dialog.remove();
    });
    dialog.showModal();
    input.select();
  });
}

/** Wire [data-close] buttons and backdrop clicks of a static <dialog>. */
export function closable(dialog) {
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog || event.target.closest("[data-close]")) dialog.close("cancel");
  });
  return dialog;
}

/** Show an error message in an element with role=alert (or hide it with null). */
export function showError(el, message) {
  if (!el) return;
  if (message) replace(el, message);
  el.hidden = !message;
}

/** A button that copies ``text`` to the clipboard and says so. */
export function copyButton(text, label = "Copy") {
  return h("button", { type: "button", class: "btn btn-sm btn-ghost copy", "aria-label": label, title: label,
    onclick: async (event) => {
      const button = event.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
        button.dataset.copied = "true";
        toast("Copied to the clipboard.");
      } catch {
        toast("The browser did not allow copying; select the text instead.", "error");
      }
    } }, icon("copy"), h("span", {}, "Copy"));
}
