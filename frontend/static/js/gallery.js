// The labelling gallery: a page of thumbnails, filters, multi-selection and keyboard shortcuts.

import { api } from "./api.js";
import { h, icon, replace, typingInField } from "./dom.js";
import { plural, SPLIT_NAMES } from "./format.js";
import { confirmDialog, toast } from "./ui.js";

const PAGE_SIZE = 48;
const UNLABELED = "\u0000unlabeled";

export class Gallery {
  constructor({ projectId, onChanged }) {
    this.projectId = projectId;
    this.onChanged = onChanged;
    this.labels = [];
    this.items = [];
    this.total = 0;
    this.offset = 0;
    this.filter = { label: "", split: "" };
    this.selected = new Set();
    this.anchor = null;
    this.loadToken = 0;

    this.list = document.getElementById("gallery");
    this.pager = document.getElementById("pager");
    this.count = document.getElementById("gallery-count");
    this.selectPage = document.getElementById("select-page");
    this.bar = document.getElementById("selection-bar");
    this.labelFilter = document.getElementById("filter-label");
    this.splitFilter = document.getElementById("filter-split");
    this.viewer = document.getElementById("image-viewer");

    this.labelFilter.addEventListener("change", () => this.setFilter({ label: this.labelFilter.value }));
    this.splitFilter.addEventListener("change", () => this.setFilter({ split: this.splitFilter.value }));
    this.selectPage.addEventListener("change", () => this.selectAll(this.selectPage.checked));
    document.getElementById("clear-selection").addEventListener("click", () => this.clearSelection());
    document.getElementById("delete-selected").addEventListener("click", () => this.deleteSelected());
    for (const button of this.bar.querySelectorAll("[data-split]")) {
      button.addEventListener("click", () => this.moveSelected(button.dataset.split));
    }
    this.list.addEventListener("keydown", (event) => this.onGridKey(event));
    document.addEventListener("keydown", (event) => this.onShortcut(event));
  }

  /** Labels changed (created, renamed, counts): refresh the filter and the assign buttons. */
  setLabels(labels) {
    this.labels = labels;
    const current = this.labelFilter.value;
    replace(this.labelFilter,
      h("option", { value: "" }, "All labels"),
      h("option", { value: UNLABELED }, "Unlabelled"),
      labels.map((label) => h("option", { value: label.name }, label.name)));
    const stillThere = current === "" || current === UNLABELED || labels.some((l) => l.name === current);
    this.labelFilter.value = stillThere ? current : "";
    if (!stillThere) this.filter.label = "";
    this.renderSelectionBar();
  }

  setFilter(change) {
    Object.assign(this.filter, change);
    this.labelFilter.value = this.filter.label;
    this.splitFilter.value = this.filter.split;
    this.offset = 0;
    this.clearSelection(false);
    return this.load();
  }

  query() {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(this.offset) });
    if (this.filter.label === UNLABELED) params.set("unlabeled", "true");
    else if (this.filter.label) params.set("label", this.filter.label);
    if (this.filter.split) params.set("split", this.filter.split);
    return params.toString();
  }

  async load() {
    const token = ++this.loadToken;
    this.list.setAttribute("aria-busy", "true");
    try {
      const page = await api(`/projects/${this.projectId}/images?${this.query()}`);
      if (token !== this.loadToken) return;
      this.items = page.items;
      this.total = page.total;
      if (!this.items.length && this.offset > 0 && this.total > 0) {
        this.offset = Math.max(0, Math.floor((this.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        await this.load();
        return;
      }
      for (const id of [...this.selected]) if (!this.items.some((item) => item.id === id)) this.selected.delete(id);
      this.render();
    } catch (error) {
      if (token === this.loadToken) replace(this.list, h("li", { class: "notice notice-error" }, error.message));
    } finally {
      if (token === this.loadToken) this.list.setAttribute("aria-busy", "false");
    }
  }

  labelColor(name) {
    return this.labels.find((label) => label.name === name)?.color || "#a1a1aa";
  }

  render() {
    const focusedIndex = this.focusedIndex();
    if (!this.items.length) {
      const filtered = this.filter.label || this.filter.split;
      replace(this.list, h("li", { class: "gallery-empty" },
        icon("image", "icon icon-xl"),
        h("p", {}, filtered ? "No images match this filter." : "No images yet."),
        h("p", { class: "muted small" }, filtered
          ? "Choose “All labels” and “All splits” to see everything."
          : "Drop a folder of pictures above: one sub-folder per label.")));
    } else {
      replace(this.list, this.items.map((item, index) => this.tile(item, index)));
    }
    this.renderPager();
    this.renderSelectionBar();
    if (focusedIndex !== null) this.focusTile(Math.min(focusedIndex, this.items.length - 1));
  }

  tile(item, index) {
    const selected = this.selected.has(item.id);
    const labelText = item.label || "Unlabelled";
    const splitText = item.split ? SPLIT_NAMES[item.split] || item.split : "";
    const splitShort = { train: "Train", val: "Val", test: "Test" }[item.split] || splitText;
    const button = h("button", {
      type: "button", class: "tile-select", "aria-pressed": String(selected),
      "aria-label": `${item.filename}; ${labelText}${splitText ? `; ${splitText}` : ""}`,
      title: item.filename,
      onclick: (event) => this.onTileClick(event, index),
    },
    h("img", { src: `/api/images/${item.id}/thumbnail`, alt: "", loading: "lazy", decoding: "async", width: 160, height: 160 }),
    h("span", { class: "tile-check", "aria-hidden": "true" }, icon("check")),
    splitText ? h("span", { class: `split-tag split-${item.split}`, title: splitText, "aria-hidden": "true" }, splitShort) : null);
    return h("li", { class: `tile${selected ? " is-selected" : ""}`, dataset: { id: item.id } },
      button,
      h("div", { class: "tile-meta" },
        h("span", { class: `tile-label${item.label ? "" : " is-unlabeled"}` },
          h("span", { class: "dot", style: { background: item.label ? this.labelColor(item.label) : "transparent" } }),
          h("span", { class: "tile-label-text" }, labelText)),
        h("button", { type: "button", class: "tile-zoom", "aria-label": `View ${item.filename} larger`,
          onclick: () => this.view(item) }, icon("image"))));
  }

  renderPager() {
    const from = this.total ? this.offset + 1 : 0;
    const to = Math.min(this.offset + PAGE_SIZE, this.total);
    replace(this.count, this.total ? `${from.toLocaleString()}–${to.toLocaleString()} of ${plural(this.total, "image")}` : "");
    if (this.total <= PAGE_SIZE) {
      replace(this.pager);
      return;
    }
    const pages = Math.ceil(this.total / PAGE_SIZE);
    const page = Math.floor(this.offset / PAGE_SIZE) + 1;
    const go = (n) => {
      this.offset = (n - 1) * PAGE_SIZE;
      this.clearSelection(false);
      this.load();
    };
    replace(this.pager,
      h("button", { type: "button", class: "btn btn-sm", disabled: page <= 1, onclick: () => go(page - 1) }, "← Previous"),
      h("span", { class: "muted small" }, `Page ${page} of ${pages}`),
      h("button", { type: "button", class: "btn btn-sm", disabled: page >= pages, onclick: () => go(page + 1) }, "Next →"));
  }

  renderSelectionBar() {
    const n = this.selected.size;
    this.bar.hidden = n === 0;
    this.selectPage.checked = n > 0 && n === this.items.length;
    this.selectPage.indeterminate = n > 0 && n < this.items.length;
    if (!n) return;
    replace(document.getElementById("selection-count"), `${plural(n, "image")} selected`);
    const buttons = this.labels.map((label, index) =>
      h("button", { type: "button", class: "btn btn-sm label-btn", onclick: () => this.assign(label.name),
        title: index < 9 ? `Press ${index + 1}` : null },
      h("span", { class: "dot", style: { background: label.color } }),
      h("span", { class: "label-btn-text" }, label.name),
      index < 9 ? h("kbd", {}, String(index + 1)) : null));
    replace(document.getElementById("assign-buttons"),
      h("span", { class: "muted small" }, "Label as"),
      buttons.length ? buttons : h("span", { class: "muted small" }, "(add a label first)"),
      h("button", { type: "button", class: "btn btn-sm btn-ghost", onclick: () => this.assign(null), title: "Press 0" },
        "No label", h("kbd", {}, "0")));
  }

  onTileClick(event, index) {
    const id = this.items[index].id;
    if (event.shiftKey && this.anchor !== null) {
      const [a, b] = [Math.min(this.anchor, index), Math.max(this.anchor, index)];
      for (let i = a; i <= b; i += 1) this.selected.add(this.items[i].id);
    } else {
      if (this.selected.has(id)) this.selected.delete(id);
      else this.selected.add(id);
      this.anchor = index;
    }
    this.syncSelection();
  }

  syncSelection() {
    for (const li of this.list.querySelectorAll(".tile")) {
      const on = this.selected.has(Number(li.dataset.id));
      li.classList.toggle("is-selected", on);
      li.querySelector(".tile-select").setAttribute("aria-pressed", String(on));
    }
    this.renderSelectionBar();
  }

  selectAll(on) {
    this.selected = new Set(on ? this.items.map((item) => item.id) : []);
    this.syncSelection();
  }

  clearSelection(sync = true) {
    this.selected.clear();
    this.anchor = null;
    if (sync) this.syncSelection();
  }

  focusedIndex() {
    const li = document.activeElement?.closest?.(".tile");
    if (!li || !this.list.contains(li)) return null;
    return [...this.list.children].indexOf(li);
  }

  focusTile(index) {
    this.list.children[index]?.querySelector(".tile-select")?.focus();
  }

  onGridKey(event) {
    const index = this.focusedIndex();
    if (index === null || !event.target.classList.contains("tile-select")) return;
    const columns = Math.max(1, Math.round(this.list.clientWidth / (this.list.children[0]?.offsetWidth || 1)));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = Math.min(this.items.length - 1, Math.max(0, index + moves[event.key]));
    this.focusTile(next);
    if (event.shiftKey) {
      this.selected.add(this.items[index].id);
      this.selected.add(this.items[next].id);
      this.syncSelection();
    }
  }

  onShortcut(event) {
    if (event.defaultPrevented || typingInField(event.target) || event.altKey) return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key.toLowerCase() === "a") {
      if (!this.items.length) return;
      event.preventDefault();
      this.selectAll(true);
      return;
    }
    if (ctrl) return;
    if (event.key === "Escape" && this.selected.size) {
      this.clearSelection();
      return;
    }
    if (!this.selected.size) return;
    if (/^[1-9]$/.test(event.key)) {
      const label = this.labels[Number(event.key) - 1];
      if (label) {
        event.preventDefault();
        this.assign(label.name);
      }
    } else if (event.key === "0") {
      event.preventDefault();
      this.assign(null);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      this.deleteSelected();
    }
  }

  async patchSelected(change, message) {
    const ids = [...this.selected];
    if (!ids.length) return;
    try {
      await api(`/projects/${this.projectId}/images`, { method: "PATCH", json: { ids, ...change } });
      toast(message(ids.length), "success");
      this.clearSelection(false);
      await Promise.all([this.load(), this.onChanged?.()]);
    } catch (error) {
      toast(error.message, "error");
    }
  }

  assign(labelName) {
    return this.patchSelected({ label: labelName }, (n) =>
      labelName ? `${plural(n, "image")} labelled “${labelName}”.` : `Label removed from ${plural(n, "image")}.`);
  }

  moveSelected(split) {
    return this.patchSelected({ split }, (n) => `${plural(n, "image")} moved to ${SPLIT_NAMES[split].toLowerCase()}.`);
  }

  async deleteSelected() {
    const ids = [...this.selected];
    if (!ids.length) return;
    const ok = await confirmDialog({
      title: `Delete ${plural(ids.length, "image")}?`,
      message: "They are removed from this project. Models already trained keep working.",
      confirmLabel: "Delete",
    });
    if (!ok) return;
    try {
      await api(`/projects/${this.projectId}/images/delete`, { method: "POST", json: { ids } });
      toast(`${plural(ids.length, "image")} deleted.`, "success");
      this.clearSelection(false);
      await Promise.all([this.load(), this.onChanged?.()]);
    } catch (error) {
      toast(error.message, "error");
    }
  }

  view(item) {
    const img = document.getElementById("viewer-img");
    img.src = `/api/images/${item.id}/file`;
    img.alt = item.filename;
    const facts = [item.label || "Unlabelled", item.split ? SPLIT_NAMES[item.split] : null,
      item.width && item.height ? `${item.width}×${item.height}` : null].filter(Boolean);
    replace(document.getElementById("viewer-caption"), h("strong", {}, item.filename), " · ", facts.join(" · "));
    this.viewer.showModal();
  }
}
