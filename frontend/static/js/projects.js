// The projects list: create, rename, delete (with confirmation).

import { api } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { ago, plural } from "./format.js";
import { confirmDialog, promptDialog, showError, toast } from "./ui.js";

const list = document.getElementById("project-list");
const createForm = document.getElementById("create-project");
const createError = document.getElementById("create-error");

function projectCard(project) {
  const rename = async () => {
    const name = await promptDialog({ title: "Rename project", label: "Project name", value: project.name });
    if (!name || name === project.name) return;
    try {
      await api(`/projects/${project.id}`, { method: "PATCH", json: { name } });
      toast("Project renamed.", "success");
      await load();
    } catch (error) {
      toast(error.message, "error");
    }
  };
  const remove = async () => {
    const what = [plural(project.image_count, "image"), plural(project.run_count, "run")].join(" and ");
    const ok = await confirmDialog({
      title: "Delete this project?",
      message: `“${project.name}” and its ${what} will be deleted for good, with every trained model.`,
      confirmLabel: "Delete project",
    });
    if (!ok) return;
    try {
      await api(`/projects/${project.id}`, { method: "DELETE" });
      toast("Project deleted.", "success");
      await load();
    } catch (error) {
      toast(error.message, "error");
    }
  };
  return h("li", { class: "project-card card", dataset: { projectId: project.id } },
    h("a", { class: "project-link", href: `/projects/${project.id}` },
      h("span", { class: "project-icon", "aria-hidden": "true" }, icon("folder")),
      h("span", { class: "project-name" }, project.name)),
    h("p", { class: "project-meta muted" },
      plural(project.image_count, "image"), " · ", plural(project.run_count, "run")),
    h("p", { class: "project-date muted small" }, `Created ${ago(project.created_at)}`),
    h("div", { class: "project-actions" },
      h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: rename,
        "aria-label": `Rename ${project.name}` }, icon("pencil"), "Rename"),
      h("button", { type: "button", class: "btn btn-danger-ghost btn-sm", onclick: remove,
        "aria-label": `Delete ${project.name}` }, icon("trash"), "Delete")));
}

function emptyState() {
  return h("div", { class: "empty" },
    h("div", { class: "empty-art", "aria-hidden": "true" }, icon("image", "icon icon-xl")),
    h("h2", {}, "No projects yet"),
    h("p", { class: "muted" },
      "Create a project, drop in a folder of pictures sorted into one sub-folder per label, and press Train."),
    h("button", { type: "button", class: "btn btn-primary",
      onclick: () => document.getElementById("new-project-name").focus() }, "Create your first project"));
}

async function load() {
  try {
    const projects = await api("/projects");
    list.setAttribute("aria-busy", "false");
    if (!projects.length) replace(list, h("li", { class: "empty-item" }, emptyState()));
    else replace(list, projects.map(projectCard));
  } catch (error) {
    replace(list, h("p", { class: "notice notice-error" }, error.message));
  }
}

createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = createForm.elements.name;
  const name = input.value.trim();
  if (!name) {
    showError(createError, "Give the project a name.");
    input.focus();
    return;
  }
  showError(createError, null);
  try {
    const project = await api("/projects", { method: "POST", json: { name } });
    window.location.assign(`/projects/${project.id}`);
  } catch (error) {
    showError(createError, error.message);
  }
});

load();
