// The muse editor: attribute groups (suggested attributes plus your own), AI settings, reference images
// (picked from your outputs), variations. `read()` gives the body of POST/PUT /api/v1/muses.

import { h, replace, field } from "../dom.js";
import { musePrompt, outputIdOf, outputUrl } from "../gen.js";
import { pickOutputs } from "./muse-picker.js";

export const GROUPS = [
  ["basics", "Basics", [["age", "late 20s"], ["gender", "woman"], ["occupation", "astronomer"]]],
  ["body", "Body", [["build", "athletic build"], ["height", "tall"], ["skin", "olive skin"]]],
  ["face", "Face", [["eyes", "green eyes"], ["features", "freckles"], ["expression", "gentle smile"]]],
  ["hair", "Hair", [["colour", "auburn hair"], ["length", "shoulder-length"], ["style", "loose waves"]]],
  ["style", "Style", [["outfit", "linen shirt"], ["accessories", "silver earrings"], ["look", "35mm film photo"]]],
  ["personality", "Personality", [["traits", "curious"], ["mood", "thoughtful"]]],
];
const DEFAULT_TEMPLATE = "{prompt}, {basics}, {face}, {hair}, {body}, {style}";
const MAX_REFERENCES = 8;
const capital = (t) => t[0].toUpperCase() + t.slice(1);

function removeButton(label, onClick) {
  const b = h("button", { type: "button", class: "btn btn-small", "aria-label": label }, "Remove");
  b.addEventListener("click", onClick);
  return b;
}

/** One custom attribute (name and value), optionally with its group (variations override any group). */
function attrRow(rows, { group = null, key = "", value = "", context }) {
  const g = group !== null ? field("Group", { kind: "select", options: GROUPS.map(([n, t]) => [n, t]), value: group }) : null;
  const k = field("Attribute", { value: key, maxlength: 40, placeholder: "tattoo" });
  const v = field("Value", { value, maxlength: 300, placeholder: "a small star tattoo" });
  k.input.setAttribute("aria-label", `${context}: attribute name`);
  v.input.setAttribute("aria-label", `${context}: attribute value`);
  const row = { g, k, v };
  const el = h("div", { class: ["attr-row", g ? "with-group" : null] }, g?.wrap, k.wrap, v.wrap,
    removeButton(`Remove this attribute of ${context}`, () => {
      el.remove();
      rows.splice(rows.indexOf(row), 1);
    }));
  row.el = el;
  rows.push(row);
  return row;
}

function attrGroup(name, title, suggested, values) {
  const fixed = suggested.map(([key, example]) => [key, field(capital(key), { value: values[key] || "", maxlength: 300,
    placeholder: example })]);
  const rows = [];
  const list = h("div", { class: "attr-rows" });
  for (const [key, value] of Object.entries(values)) {
    if (!suggested.some(([k]) => k === key)) list.append(attrRow(rows, { key, value, context: title }).el);
  }
  const add = h("button", { type: "button", class: "btn btn-small add-row" }, `Add an attribute to ${title.toLowerCase()}`);
  add.addEventListener("click", () => {
    const row = attrRow(rows, { context: title });
    list.append(row.el);
    row.k.input.focus();
  });
  const el = h("fieldset", {}, h("legend", {}, title), h("div", { class: "form-grid" }, fixed.map(([, f]) => f.wrap)), list, add);
  return {
    el,
    read() {
      const out = {};
      for (const [key, f] of fixed) if (f.input.value.trim()) out[key] = f.input.value.trim();
      for (const r of rows) if (r.k.input.value.trim() && r.v.input.value.trim()) out[r.k.input.value.trim()] = r.v.input.value.trim();
      return out;
    },
  };
}

function variationBox(list, variations, v = { name: "", prompt_suffix: "", attributes: {} }) {
  const name = field("Variation name", { value: v.name, maxlength: 40, required: true, placeholder: "winter" });
  const suffix = field("Added to the prompt", { value: v.prompt_suffix, maxlength: 300, placeholder: "snowy street, warm coat" });
  const rows = [];
  const overrides = h("div", { class: "attr-rows" });
  const context = () => `variation ${name.input.value || "(unnamed)"}`;
  for (const [group, attrs] of Object.entries(v.attributes || {})) {
    for (const [key, value] of Object.entries(attrs)) overrides.append(attrRow(rows, { group, key, value, context: context() }).el);
  }
  const add = h("button", { type: "button", class: "btn btn-small add-row" }, "Override an attribute");
  add.addEventListener("click", () => {
    const row = attrRow(rows, { group: "style", context: context() });
    overrides.append(row.el);
    row.g.input.focus();
  });
  const item = { read() {
    const attributes = {};
    for (const r of rows) {
      if (!r.k.input.value.trim() || !r.v.input.value.trim()) continue;
      (attributes[r.g.input.value] ||= {})[r.k.input.value.trim()] = r.v.input.value.trim();
    }
    return { name: name.input.value.trim(), prompt_suffix: suffix.input.value.trim(), attributes };
  } };
  const drop = h("button", { type: "button", class: "btn btn-small btn-danger" }, "Remove variation");
  item.el = h("fieldset", { class: "variation" }, h("legend", {}, "Variation"),
    h("div", { class: "form-grid" }, name.wrap, suffix.wrap), overrides, h("div", { class: "inline add-row" }, add, drop));
  drop.addEventListener("click", () => {
    item.el.remove();
    variations.splice(variations.indexOf(item), 1);
  });
  variations.push(item);
  list.append(item.el);
  return { item, focus: () => name.input.focus() };
}

/** The editor for `spec` (a MuseSpec, or null for a new muse). `checkpoints`: the pool's. */
export function museEditor({ spec, checkpoints, loadOutputs, actions }) {
  const s = spec || { name: "", prompt_template: DEFAULT_TEMPLATE, negative_prompt: "", checkpoint: null,
    reference_images: [], variations: [] };
  const name = field("Name", { value: s.name, maxlength: 80, required: true, autocomplete: "off", placeholder: "Ada" });
  const groups = GROUPS.map(([n, title, suggested]) => [n, attrGroup(n, title, suggested, s[n] || {})]);
  groups[0][1].el.querySelector(".form-grid").prepend(name.wrap);

  const template = field("Prompt template", { kind: "textarea", rows: 2, maxlength: 2000, value: s.prompt_template,
    hint: "Must contain {prompt} (the job's prompt). May use {name}, {basics}, {body}, {face}, {hair}, {style}, {personality}." });
  const negative = field("Negative prompt", { kind: "textarea", rows: 2, maxlength: 2000, value: s.negative_prompt,
    placeholder: "blurry, extra fingers" });
  const names = [...new Set([...checkpoints, ...(s.checkpoint ? [s.checkpoint] : [])])];
  const checkpoint = field("Preferred checkpoint", { kind: "select", value: s.checkpoint || "",
    options: [["", "None (the studio's choice)"], ...names.map((c) => [c, c])] });
  const preview = h("p", { class: "hint muse-preview", "aria-live": "polite" });
  const ai = h("fieldset", {}, h("legend", {}, "AI settings"), template.wrap, negative.wrap,
    h("div", { class: "form-grid" }, checkpoint.wrap), preview);

  let refs = [...s.reference_images];
  const refList = h("ul", { class: "refs", "aria-label": "Reference images" });
  const addRefs = h("button", { type: "button", class: "btn btn-small" }, "Add from your outputs…");
  function drawRefs() {
    replace(refList, refs.map((ref, i) => {
      const id = outputIdOf(ref) || ref;
      return h("li", {}, h("img", { src: outputUrl(id), alt: `Reference image ${i + 1}`, loading: "lazy" }),
        removeButton(`Remove reference image ${i + 1}`, () => {
          refs = refs.filter((r) => r !== ref);
          drawRefs();
          addRefs.focus();
        }));
    }));
    refList.hidden = !refs.length;
    addRefs.disabled = refs.length >= MAX_REFERENCES;
  }
  addRefs.addEventListener("click", async () => {
    const taken = new Set(refs.map((r) => outputIdOf(r) || r));
    const chosen = await pickOutputs({ loadOutputs, exclude: taken, room: MAX_REFERENCES - refs.length });
    if (chosen && chosen.length) {
      refs = [...refs, ...chosen];
      drawRefs();
    }
  });
  drawRefs();
  const refBox = h("fieldset", {}, h("legend", {}, "Reference images"),
    h("p", { class: "hint" }, `Up to ${MAX_REFERENCES} of your outputs. The first one is the input of image-to-image generations.`),
    refList, addRefs);

  const variations = [];
  const varList = h("div", { class: "attr-rows" });
  for (const v of s.variations || []) variationBox(varList, variations, v);
  const addVar = h("button", { type: "button", class: "btn btn-small add-row" }, "Add a variation");
  addVar.addEventListener("click", () => variationBox(varList, variations).focus());
  const varBox = h("fieldset", {}, h("legend", {}, "Variations"),
    h("p", { class: "hint" }, "Named variants (an outfit, a season): they override attributes and add words to the prompt."),
    varList, addVar);

  const form = h("form", { class: "muse-editor", "aria-label": "Muse" },
    h("div", { class: "grid-2" }, groups.map(([, g]) => g.el)), ai, refBox, varBox, actions);

  function read() {
    const body = { name: name.input.value.trim(), prompt_template: template.input.value, negative_prompt: negative.input.value.trim(),
      checkpoint: checkpoint.input.value || null, reference_images: refs, variations: variations.map((v) => v.read()) };
    for (const [n, g] of groups) body[n] = g.read();
    return body;
  }
  function check() {
    const text = template.input.value;
    template.input.setCustomValidity(text.includes("{prompt}") ? "" : "The prompt template must contain {prompt}, where the job's prompt goes.");
    preview.textContent = `Example: “a walk in the rain” becomes “${musePrompt(read(), "a walk in the rain")}”.`;
  }
  form.addEventListener("input", check);
  check();
  return { el: form, read, focus: () => name.input.focus() };
}
