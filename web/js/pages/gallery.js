// Gallery: your outputs in a grid, filtered by tag, muse and date; open full size, download, edit tags, delete.

import { hasAccount } from "../session.js";
import { api } from "../api.js";
import { h, replace, field, timeEl, utc } from "../dom.js";
import { loadMuses, media, downloadLink, bytes, settingsList, sendToStudio } from "../gen.js";
import { openLightbox } from "../lightbox.js";
import { pageHeader, section, busy, confirmDialog, showNotice, showError, empty } from "../ui.js";

const PAGE = 24;
const FILTERS = ["tag", "muse", "since", "until"];

function accountNeeded(main) {
  replace(main, pageHeader("Gallery", "Your outputs."),
    h("p", {}, "Outputs belong to accounts. ",
      h("a", { href: "#/signin?next=%2Fgallery" }, "Sign in"), " to see yours."));
  return () => {};
}

export function render(main, { params, session, navigate }) {
  if (!hasAccount()) return accountNeeded(main);
  const controller = new AbortController();
  const signal = controller.signal;
  const f = {
    tag: field("Tag", { maxlength: 40, value: params.get("tag") || "", list: "gallery-tags", autocomplete: "off" }),
    muse: field("Muse", { kind: "select", options: [["", "Any"]] }),
    since: field("From (UTC day)", { kind: "date", value: params.get("since") || "" }),
    until: field("To (UTC day)", { kind: "date", value: params.get("until") || "" }),
  };
  const tagList = h("datalist", { id: "gallery-tags" });
  const apply = h("button", { type: "submit", class: "btn btn-primary" }, "Apply filters");
  const clear = h("button", { type: "button", class: "btn" }, "Clear");
  const form = h("form", { class: "form-grid", "aria-label": "Gallery filters" }, Object.values(f).map((x) => x.wrap), tagList,
    h("div", { class: "form-actions" }, apply, clear));
  const count = h("p", { class: "muted", role: "status" });
  const grid = h("ul", { class: "gallery", "aria-label": "Outputs" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const results = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  let items = [];
  let next = null;
  let muses = [];
  const museName = (id) => muses.find((m) => m.id === id)?.muse.name || null;

  function query() {
    const tag = f.tag.input.value.trim();
    return { limit: PAGE, tag: tag || null, muse_id: f.muse.input.value || null,
      since: f.since.input.value ? `${f.since.input.value}T00:00:00Z` : null,
      until: f.until.input.value ? `${f.until.input.value}T23:59:59.999Z` : null };
  }
  const filtered = () => FILTERS.some((name) => f[name].input.value);

  const altOf = (item) => `Output ${item.filename}${item.muse_id && museName(item.muse_id) ? `, muse ${museName(item.muse_id)}` : ""}, ` +
    `made ${utc(item.created_at, { seconds: false })}`;

  /** "Reuse these settings" and "Variation (new seed)": the studio opens with the output's settings. */
  function reuseButtons(item, { small = true } = {}) {
    const settings = item.settings;
    if (!settings || !settings.template) return null;
    const cls = small ? "btn btn-small" : "btn";
    const reuse = h("button", { type: "button", class: cls, "aria-label": `Reuse these settings of ${item.filename}` },
      "Reuse these settings");
    const variation = h("button", { type: "button", class: cls, "aria-label": `Variation (new seed) of ${item.filename}` },
      "Variation (new seed)");
    const go = (newSeed) => {
      sendToStudio(settings, { newSeed });
      document.querySelector("dialog.lightbox")?.close();
      navigate("/studio");
    };
    reuse.addEventListener("click", () => go(false));
    variation.addEventListener("click", () => go(true));
    return [reuse, variation];
  }

  function caption(item) {
    const made = settingsList(item.settings, { museName });
    const buttons = reuseButtons(item, { small: false });
    return [made, buttons ? h("div", { class: "actions lightbox-actions" }, buttons) : null,
      h("dl", { class: "kv" },
        h("dt", {}, "Created (UTC)"), h("dd", {}, timeEl(item.created_at)),
        h("dt", {}, "File"), h("dd", {}, `${item.content_type}, ${bytes(item.size)}`),
        h("dt", {}, "Tags"), h("dd", {}, item.tags.length ? item.tags.join(", ") : "none"),
        h("dt", {}, "Generation"), h("dd", {}, h("code", {}, item.job_id)))];
  }

  function card(item) {
    const open = h("button", { type: "button", class: "thumb-button", "aria-label": `Open ${item.filename} full size` },
      media(item, altOf(item)));
    open.addEventListener("click", () => openLightbox(items, items.indexOf(item), { caption, altOf }));
    const tags = h("button", { type: "button", class: "btn btn-small", "aria-label": `Edit the tags of ${item.filename}` }, "Tags…");
    tags.addEventListener("click", () => editTags(item, tags));
    const del = h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Delete ${item.filename}` }, "Delete…");
    del.addEventListener("click", () => remove(item, del));
    const muse = item.muse_id ? h("a", { href: `#/muses?id=${encodeURIComponent(item.muse_id)}` }, museName(item.muse_id) || "muse") : null;
    const p = item.settings?.params || {};
    const prompt = p.prompt ? String(p.prompt) : "";
    const summary = [item.settings?.template || (item.settings ? "own workflow" : null),
      p.width && p.height ? `${p.width}×${p.height}` : null, p.steps ? `${p.steps} steps` : null,
      p.seed !== undefined ? `seed ${p.seed}` : null].filter(Boolean).join(" · ");
    return h("li", { "data-id": item.id }, h("figure", { class: "gallery-item" }, open,
      h("figcaption", {},
        h("div", { class: "when" }, timeEl(item.created_at), muse ? [" · ", muse] : null),
        prompt ? h("p", { class: "card-prompt", title: prompt }, prompt.length > 120 ? `${prompt.slice(0, 120)}…` : prompt) : null,
        item.settings ? h("details", { class: "made" }, h("summary", {}, summary || "How it was made"),
          settingsList(item.settings, { museName })) : null,
        item.tags.length ? h("ul", { class: "tags", "aria-label": "Tags" }, item.tags.map((t) => h("li", { class: "chip" }, t))) : null,
        h("div", { class: "item-actions" }, downloadLink(item), tags, del),
        reuseButtons(item) ? h("div", { class: "item-actions" }, reuseButtons(item)) : null)));
  }

  function draw() {
    replace(grid, items.map(card));
    const known = [...new Set(items.flatMap((i) => i.tags))].sort();
    replace(tagList, known.map((t) => h("option", { value: t })));
    more.hidden = next === null;
    count.textContent = items.length ? `${items.length}${next !== null ? "+" : ""} output(s)${filtered() ? " match" : ""}.` : "";
    if (items.length) replace(results, count, grid, h("div", { class: "load-more" }, more));
    else if (filtered()) replace(results, count, empty("No outputs match these filters."));
    else replace(results, count, h("p", { class: "empty" }, "Nothing here yet. ", h("a", { href: "#/studio" }, "Generate something in the studio"), "."));
  }

  async function load(append = false) {
    const q = query();
    if (append) q.before = next;
    try {
      const page = await api("GET", "/api/v1/gallery", { as: "user", query: q, signal });
      const first = items.length;
      items = append ? [...items, ...page.items] : page.items;
      next = page.next ?? null;
      draw();
      if (append && items.length > first) grid.children[first].querySelector("button").focus();
    } catch (error) {
      showError(error, "Gallery");
      if (!append) replace(results, empty("The gallery could not be loaded."));
    }
  }

  async function editTags(item, button) {
    const values = await confirmDialog({ title: `Tags of ${item.filename}`, confirmLabel: "Save tags",
      body: h("p", { class: "muted" }, "Separate tags with commas. Letters, digits, spaces and _-:. only; stored in lower case."),
      fields: [{ name: "tags", label: "Tags", value: item.tags.join(", "), maxlength: 900 }] });
    if (!values) return;
    const wanted = [...new Set(values.tags.split(",").map((t) => t.trim().toLowerCase().replace(/\s+/g, " ")).filter(Boolean))];
    const body = { add: wanted.filter((t) => !item.tags.includes(t)), remove: item.tags.filter((t) => !wanted.includes(t)) };
    if (!body.add.length && !body.remove.length) return;
    const updated = await busy(button, () => api("POST", `/api/v1/gallery/${encodeURIComponent(item.id)}/tags`, { as: "user", body }),
      "Tags");
    if (!updated) return;
    items[items.indexOf(item)] = updated;
    draw();
    showNotice(updated.tags.length ? `Tags saved: ${updated.tags.join(", ")}.` : "Tags removed.");
    grid.querySelector(`li[data-id="${CSS.escape(updated.id)}"] button[aria-label^="Edit the tags"]`)?.focus();
  }

  async function remove(item, button) {
    const ok = await confirmDialog({ title: "Delete this output?", confirmLabel: "Delete", danger: true,
      body: h("p", {}, h("strong", {}, item.filename), " is removed from your gallery and from storage. This cannot be undone.") });
    if (!ok) return;
    const done = await busy(button, () => api("DELETE", `/api/v1/gallery/${encodeURIComponent(item.id)}`, { as: "user" }), "Delete");
    if (!done) return;
    const at = items.indexOf(item);
    items = items.filter((i) => i !== item);
    draw();
    showNotice("Output deleted.");
    const focusable = grid.children[Math.min(at, items.length - 1)];
    (focusable ? focusable.querySelector("button") : main.querySelector("h1")).focus();
  }

  function remember() {
    const q = new URLSearchParams();
    for (const name of FILTERS) if (f[name].input.value) q.set(name, f[name].input.value.trim());
    history.replaceState(null, "", `#/gallery${q.toString() ? `?${q}` : ""}`);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    remember();
    await busy(apply, () => load(), "Gallery");
  });
  clear.addEventListener("click", () => {
    for (const name of FILTERS) f[name].input.value = "";
    remember();
    load();
  });
  more.addEventListener("click", () => busy(more, () => load(true), "Gallery"));

  replace(main,
    pageHeader("Gallery", "Everything you generated, newest first. Open an output for its full size."),
    section("Filter", form),
    h("section", { class: "card", "aria-labelledby": "gallery-outputs" }, h("h2", { id: "gallery-outputs" }, "Outputs"), results));

  (async () => {
    try {
      muses = await loadMuses(signal);
    } catch (error) {
      showError(error, "Listing muses");
    }
    replace(f.muse.input, h("option", { value: "" }, "Any"), muses.map((m) => h("option", { value: m.id }, m.muse.name)));
    f.muse.input.value = params.get("muse") || "";
    await load();
  })();
  return () => controller.abort();
}
