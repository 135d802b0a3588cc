// The labelling gallery: a page of thumbnails, filters, multi-selection and keyboard shortcuts.

import { api } from "./api.js";
import { h, icon, replace, typingInField } from "./dom.js";
import { plural, SPLIT_NAMES } from "./format.js";
import { applyFix, deleteImages } from "./fixes.js";
import { toast } from "./ui.js";

const PAGE_SIZE = 48;
const UNLABELED = "\u0000unlabeled";

export class Gallery {
  constructor({ projectId, onChanged }) {
    this.projectId = projectId;
    this.onChanged = onChanged;
    this.labels = [];
    this.items = [];
    this.total = 0;
    // Filters and page live in the URL: a reload or a shared link shows the same images.
    const url = new URLSearchParams(window.location.search);
    this.filter = { label: url.get("unlabeled") === "true" ? UNLABELED : url.get("label") || "", split: url.get("split") || "" };
    this.offset = Math.max(0, (Number(url.get("page")) || 1) - 1) * PAGE_SIZE;
    this.matching = null; // {ids, total} once "select all N matching" was chosen
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
    this.splitFilter.value = this.filter.split;
    document.getElementById("viewer-prev").addEventListener("click", () => this.step(-1));
    document.getElementById("viewer-next").addEventListener("click", () => this.step(1));
    this.viewer.addEventListener("keydown", (event) => {
      if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
        event.preventDefault();
        this.step(event.key === "ArrowLeft" ? -1 : 1);
      }
    });
    document.addEventListener("keydown", (event) => this.onShortcut(event));
  }

  /** Labels changed (created, renamed, counts): refresh the filter and the assign buttons. */
  /** While a drop is still sending, an empty gallery says so instead of "No images yet". */
  setUploading(on) {
    if (this.uploading === on) return;
    this.uploading = on;
    if (!this.items?.length) this.render();
  }

  setLabels(labels) {
    this.labels = labels;
    const current = this.filter.label;
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

  filterParams() {
    const params = new URLSearchParams();
    if (this.filter.label === UNLABELED) params.set("unlabeled", "true");
    else if (this.filter.label) params.set("label", this.filter.label);
    if (this.filter.split) params.set("split", this.filter.split);
    return params;
  }

  query() {
    const params = this.filterParams();
    params.set("limit", String(PAGE_SIZE));
    params.set("offset", String(this.offset));
    return params.toString();
  }

  writeUrl() {
    const params = this.filterParams();
    const page = Math.floor(this.offset / PAGE_SIZE) + 1;
    if (page > 1) params.set("page", String(page));
    const search = params.toString();
    const url = `${window.location.pathname}${search ? `?${search}` : ""}${window.location.hash}`;
    if (url !== window.location.pathname + window.location.search + window.location.hash) window.history.replaceState(null, "", url);
  }

  async load() {
    const token = ++this.loadToken;
    this.writeUrl();
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
      replace(this.list, this.uploading && !filtered
        ? h("li", { class: "gallery-empty gallery-uploading", id: "gallery-uploading" },
          h("span", { class: "pulse", "aria-hidden": "true" }),
          h("p", {}, "Uploading…"),
          h("p", { class: "muted small" }, "Pictures appear here as the server accepts them."))
        : h("li", { class: "gallery-empty" },
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
    const more = !this.matching && n === this.items.length && this.total > this.items.length;
    replace(document.getElementById("selection-count"), `${plural(n, "image")} selected`,
      this.matching ? h("span", { class: "muted small" }, " (all matching the filter)") : null,
      more ? h("button", { type: "button", class: "btn btn-sm btn-link", id: "select-matching",
        onclick: () => this.selectMatching() }, `Select all ${this.total.toLocaleString()} matching`) : null);
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
    this.matching = null;
    this.selected = new Set(on ? this.items.map((item) => item.id) : []);
    this.syncSelection();
  }

  /** Every image the filter matches, on every page (the server resolves the filter). */
  async selectMatching() {
    try {
      this.matching = await api(`/projects/${this.projectId}/images/ids?${this.filterParams()}`);
    } catch (error) {
      toast(error.message, "error");
      return;
    }
    this.selected = new Set(this.matching.ids);
    this.syncSelection();
  }

  clearSelection(sync = true) {
    this.matching = null;
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

  /** Relabel or move the selection; the toast offers Undo (the server remembers how they were). */
  async patchSelected(change) {
    const ids = [...this.selected];
    if (!ids.length) return;
    this.clearSelection(false);
    try {
      await applyFix(this.projectId, { ids, ...change, source: "gallery" },
        { onChanged: () => Promise.all([this.load(), this.onChanged?.()]) });
    } catch (error) {
      toast(error.message, "error");
    }
  }

  assign(labelName) {
    return this.patchSelected({ label: labelName });
  }

  moveSelected(split) {
    return this.patchSelected({ split });
  }

  /** Delete the selection at once; the toast's Undo brings the images back with their
   * labels, splits and files, as relabel and move are undone (the server keeps the files). */
  async deleteSelected() {
    const ids = [...this.selected];
    if (!ids.length) return;
    this.clearSelection(false);
    try {
      await deleteImages(this.projectId, ids,
        { source: "gallery", confirm: false, onChanged: () => Promise.all([this.load(), this.onChanged?.()]) });
    } catch (error) {
      toast(error.message, "error");
    }
  }

  /** The previous or next image of the gallery, turning the page at its ends. */
  async step(delta) {
    let index = this.items.findIndex((item) => item.id === this.viewing) + delta;
    if (index < 0 || index >= this.items.length) {
      const offset = this.offset + (index < 0 ? -PAGE_SIZE : PAGE_SIZE);
      if (offset < 0 || offset >= this.total) return;
      this.offset = offset;
      this.clearSelection(false);
      await this.load();
      index = index < 0 ? this.items.length - 1 : 0;
    }
    if (this.items[index]) this.view(this.items[index]);
  }

  view(item) {
    this.viewing = item.id;
    const position = this.offset + this.items.findIndex((i) => i.id === item.id) + 1;
    replace(document.getElementById("viewer-position"), `${position.toLocaleString()} of ${this.total.toLocaleString()}`);
    document.getElementById("viewer-prev").disabled = position <= 1;
    document.getElementById("viewer-next").disabled = position >= this.total;
    const img = document.getElementById("viewer-img");
    img.src = `/api/images/${item.id}/file`;
    img.alt = item.filename;
    const facts = [item.label || "Unlabelled", item.split ? SPLIT_NAMES[item.split] : null,
      item.width && item.height ? `${item.width}×${item.height}` : null].filter(Boolean);
    replace(document.getElementById("viewer-caption"), h("strong", {}, item.filename), " · ", facts.join(" · "));
    if (!this.viewer.open) this.viewer.showModal();
  }
}
