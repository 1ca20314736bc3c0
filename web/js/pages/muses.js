// Muses: saved characters. The list (new, import a JSON file), and one muse's editor (?id=…, or ?new=1)
// with export, delete, "use in the studio", and the generations that used it.

import { api, ApiError } from "../api.js";
import { hasAccount } from "../session.js";
import { h, replace, timeEl, download } from "../dom.js";
import { listAll, loadMuses, media, outputIdOf, outputUrl, statusBadge, costOf } from "../gen.js";
import { pageHeader, section, busy, confirmDialog, showNotice, showError, tableWrap, empty } from "../ui.js";
import { museEditor, GROUPS } from "./muse-editor.js";

const HISTORY_SCAN = 300; // generations read to find a muse's (the API lists them without a muse filter)

function slug(name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "muse";
}

async function exportMuse(muse, button) {
  const doc = await busy(button, () => api("GET", `/api/v1/muses/${encodeURIComponent(muse.id)}/export`, { as: "user" }), "Export");
  if (doc) download(`${slug(muse.muse.name)}.muse.json`, doc);
}

/** A hidden file input behind a visible button: choose a muse JSON file and import it. */
function importButton(navigate) {
  const input = h("input", { type: "file", accept: ".json,application/json", hidden: true, "aria-hidden": "true", tabindex: "-1" });
  const button = h("button", { type: "button", class: "btn" }, "Import JSON…");
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", async () => {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    let doc;
    try {
      doc = JSON.parse(await file.text());
    } catch (error) {
      showError(new ApiError(0, "INVALID_JSON", `${file.name} is not JSON (${error.message})`), "Import");
      return;
    }
    if (doc && typeof doc === "object" && !("muse" in doc) && "name" in doc) doc = { format: "stoker.muse", version: 1, muse: doc };
    const made = await busy(button, () => api("POST", "/api/v1/muses/import", { as: "user", body: doc }), `Importing ${file.name}`);
    if (made) {
      showNotice(`Imported ${made.muse.name}.`);
      navigate(`/muses?id=${encodeURIComponent(made.id)}`);
    }
  });
  return h("span", { class: "file-button" }, button, input);
}

function avatar(muse) {
  const first = muse.muse.reference_images[0];
  const id = first ? outputIdOf(first) || first : null;
  return id ? h("img", { class: "avatar", src: outputUrl(id), alt: "", loading: "lazy" })
    : h("span", { class: "avatar", "aria-hidden": "true" }, muse.muse.name.slice(0, 1).toUpperCase());
}

function summary(spec) {
  const words = GROUPS.flatMap(([g]) => Object.values(spec[g] || {})).slice(0, 5).join(", ");
  const extra = [spec.variations.length ? `${spec.variations.length} variation(s)` : "",
    spec.reference_images.length ? `${spec.reference_images.length} reference image(s)` : ""].filter(Boolean).join(" · ");
  return [words || "No attributes yet.", extra ? h("br") : null, extra ? h("span", { class: "muted" }, extra) : null];
}

function renderList(main, { navigate, signal }) {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const create = h("a", { href: "#/muses?new=1", class: "btn btn-primary" }, "New muse");
  replace(main, pageHeader("Muses", "Saved characters: attributes, a prompt template and variations, reused in the studio.",
    importButton(navigate), create), list);
  loadMuses(signal).then((muses) => {
    if (!muses.length) {
      replace(list, h("div", { class: "card" }, empty("No muses yet."),
        h("p", {}, h("a", { href: "#/muses?new=1" }, "Create your first muse"), ", or import one from a JSON file.")));
      return;
    }
    replace(list, h("ul", { class: "muse-list", "aria-label": "Your muses" }, muses.map((m) => {
      const exp = h("button", { type: "button", class: "btn btn-small", "aria-label": `Export ${m.muse.name} as JSON` }, "Export");
      exp.addEventListener("click", () => exportMuse(m, exp));
      return h("li", { class: "card muse-card" }, avatar(m), h("div", {},
        h("h2", {}, h("a", { href: `#/muses?id=${encodeURIComponent(m.id)}` }, m.muse.name)),
        h("p", {}, summary(m.muse)),
        h("div", { class: "item-actions" },
          h("a", { class: "btn btn-small", href: `#/studio?muse=${encodeURIComponent(m.id)}`, "aria-label": `Use ${m.muse.name} in the studio` },
            "Use in studio"), exp)));
    })));
  }).catch((error) => {
    showError(error, "Listing muses");
    replace(list, empty("Your muses could not be listed."));
  });
}

async function museHistory(muse, signal) {
  const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const body = section(`Generations with ${muse.muse.name}`, box,
    h("p", {}, h("a", { href: `#/gallery?muse=${encodeURIComponent(muse.id)}` }, `See ${muse.muse.name}'s outputs in the gallery`)));
  listAll("/api/v1/generations", { query: { limit: 100 }, cursorParam: "before", max: HISTORY_SCAN, signal }).then((jobs) => {
    const mine = jobs.filter((j) => j.muse_id === muse.id);
    if (!mine.length) {
      replace(box, empty("No generations with this muse yet."));
      return;
    }
    replace(box, tableWrap(`Generations with ${muse.muse.name}`, h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["Created (UTC)", "Status", "Prompt", "Cost", "Result"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, mine.map((j) => {
        const out = (j.outputs || [])[0];
        return h("tr", { "data-id": j.id }, h("td", {}, timeEl(j.created_at)), h("td", {}, statusBadge(j.status)),
          h("td", { class: "what" }, String(j.params?.prompt || "")), h("td", { class: "num" }, costOf(j)),
          h("td", {}, out ? media(out, `Result of ${j.params?.prompt || j.id}`, { cls: "history-thumb" }) : "—"));
      })))));
  }).catch((error) => {
    showError(error, "Generations with this muse");
    replace(box, empty("The generations could not be listed."));
  });
  return body;
}

async function renderEditor(main, { id, navigate, signal }) {
  let muse = null;
  let info = { checkpoints: [] };
  try {
    [muse, info] = await Promise.all([id ? api("GET", `/api/v1/muses/${encodeURIComponent(id)}`, { as: "user", signal }) : null,
      api("GET", "/api/v1/templates", { as: "user", signal }).catch(() => ({ checkpoints: [] }))]);
  } catch (error) {
    if (signal.aborted) return;
    showError(error, "Loading the muse");
    replace(main, pageHeader("Muse"), h("p", {}, empty("This muse could not be loaded. "), h("a", { href: "#/muses" }, "Back to your muses")));
    return;
  }
  if (signal.aborted) return; // the user went elsewhere meanwhile
  const save = h("button", { type: "submit", class: "btn btn-primary" }, muse ? "Save changes" : "Create muse");
  const cancel = h("a", { href: "#/muses", class: "btn" }, muse ? "Back to muses" : "Cancel");
  const editor = museEditor({ spec: muse ? muse.muse : null, checkpoints: info.checkpoints || [],
    loadOutputs: () => listAll("/api/v1/gallery", { query: { limit: 100 }, cursorParam: "before", max: 100, signal }),
    actions: h("div", { class: "editor-actions" }, save, cancel) });
  editor.el.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!editor.el.reportValidity()) return;
    const body = editor.read();
    const saved = await busy(save, () => (muse
      ? api("PUT", `/api/v1/muses/${encodeURIComponent(muse.id)}`, { as: "user", body })
      : api("POST", "/api/v1/muses", { as: "user", body })), "Save muse");
    if (!saved) return;
    showNotice(`${saved.muse.name} saved (version ${saved.version}).`);
    if (!muse) navigate(`/muses?id=${encodeURIComponent(saved.id)}`);
    else muse = saved;
  });

  const actions = [];
  if (muse) {
    const exp = h("button", { type: "button", class: "btn" }, "Export JSON");
    exp.addEventListener("click", () => exportMuse(muse, exp));
    const del = h("button", { type: "button", class: "btn btn-danger" }, "Delete…");
    del.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: `Delete ${muse.muse.name}?`, confirmLabel: "Delete", danger: true,
        body: h("p", {}, "The muse is deleted. Generations made with it keep their outputs.") });
      if (!ok) return;
      const done = await busy(del, () => api("DELETE", `/api/v1/muses/${encodeURIComponent(muse.id)}`, { as: "user" }), "Delete muse");
      if (done) {
        showNotice(`${muse.muse.name} deleted.`);
        navigate("/muses");
      }
    });
    actions.push(h("a", { href: `#/studio?muse=${encodeURIComponent(muse.id)}`, class: "btn btn-primary" }, "Use in studio"), exp, del);
  }
  replace(main,
    pageHeader(muse ? `Muse: ${muse.muse.name}` : "New muse",
      muse ? "Changes apply to generations from now on." : "Describe a character once; reuse it in the studio.", ...actions),
    h("section", { class: "card", "aria-label": "Muse editor" }, editor.el),
    muse ? await museHistory(muse, signal) : null);
  if (!muse) editor.focus();
  else if (!main.contains(document.activeElement)) main.querySelector("h1").focus();
}

export function render(main, { params, navigate, session }) {
  if (!hasAccount()) {
    replace(main, pageHeader("Muses", "Saved characters."),
      h("p", {}, "Muses belong to accounts. ",
        h("a", { href: "#/signin?next=%2Fmuses" }, "Sign in"), " to see yours."));
    return () => {};
  }
  const controller = new AbortController();
  const id = params.get("id");
  if (id || params.get("new")) renderEditor(main, { id, navigate, signal: controller.signal });
  else renderList(main, { navigate, signal: controller.signal });
  return () => controller.abort();
}
