// The studio's form: a template (or your own workflow file), its parameters from GET /api/v1/templates,
// a muse; it builds the body of POST /api/v1/generations (and of the estimate).

import { h, replace, field, utc } from "../dom.js";
import { diceIcon, musePrompt, nodeErrors } from "../gen.js";

export const WORKFLOW = "workflow";
const TEMPLATE_LABELS = { txt2img: "Image", img2img: "Image from one of your images", video: "Video (animated PNG)" };
const PRESET_LABELS = { low: "Low (quick draft)", medium: "Medium", high: "High", ultra: "Ultra (slowest)" };
const MAIN = ["checkpoint", "width", "height", "steps", "cfg", "seed", "batch_size", "image"];
const LABELS = { prompt: "Prompt", negative_prompt: "Negative prompt", checkpoint: "Checkpoint", width: "Width (px)",
  height: "Height (px)", steps: "Steps", cfg: "CFG scale", seed: "Seed", batch_size: "Batch size", sampler: "Sampler",
  scheduler: "Scheduler", frames: "Frames", fps: "Frames per second", denoise: "Denoise (how much changes)",
  image: "Input image" };
const FROM_PRESET = new Set(["width", "height", "steps"]);
const MAX_SEED = Number.MAX_SAFE_INTEGER; // JSON numbers past this lose digits in the browser

function limits(spec) {
  const parts = [];
  if (spec.min !== null && spec.max !== null && spec.max !== undefined && spec.max < 1e12) parts.push(`${spec.min}–${spec.max}`);
  if (spec.multiple_of) parts.push(`multiple of ${spec.multiple_of}`);
  return parts.join(", ");
}

/**
 * Build the form. `info`: GET /api/v1/templates; `muses`: the user's muses; `loadOutputs()`: the user's outputs
 * (for an input image, loaded when first needed); `onChange()`: anything changed; `actions`: nodes at the end.
 */
export function studioForm({ info, muses, loadOutputs, onChange, actions }) {
  const templates = new Map(info.templates.map((t) => [t.name, t]));
  const checkpoints = info.checkpoints || [];
  const widgets = new Map(); // param name -> {wrap, input, type}
  let workflow = null;

  const template = field("Template", { kind: "select", value: templates.has("txt2img") ? "txt2img" : info.templates[0]?.name,
    options: [...info.templates.map((t) => [t.name, TEMPLATE_LABELS[t.name] || t.name]), [WORKFLOW, "Your own workflow (upload)"]],
    hint: " " });
  const templateHint = template.wrap.querySelector(".hint");

  // --- your own workflow -----------------------------------------------------------------
  const file = field("Workflow file (ComfyUI API format, .json)", { kind: "file", accept: ".json,application/json",
    hint: "In ComfyUI: Workflow → Export (API). It is checked before anything runs." });
  const fileStatus = h("p", { class: "hint", role: "status" });
  // The file's own problem (not JSON) has its place, which the API's node errors (`problems`) never clear.
  const fileProblem = h("div", { class: "problems file-problem" });
  const problems = h("div", { class: "problems" });
  const workflowBox = h("div", { class: "workflow-box", hidden: true }, file.wrap, fileStatus, fileProblem);
  let fileError = "";
  let fileName = "";

  function useWorkflow(parsed, name) {
    workflow = parsed;
    fileName = name;
    const classes = [...new Set(Object.values(parsed).map((n) => n && n.class_type).filter(Boolean))];
    fileStatus.textContent = `${name}: ${Object.keys(parsed).length} node(s)` +
      (classes.length ? ` (${classes.slice(0, 6).join(", ")}${classes.length > 6 ? ", …" : ""})` : "") + ".";
  }

  file.input.addEventListener("change", async () => {
    workflow = null;
    fileName = "";
    fileError = "";
    file.input.setCustomValidity("");
    showProblems(null);
    replace(fileProblem);
    fileStatus.textContent = "";
    const chosen = file.input.files[0];
    if (!chosen) {
      onChange();
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(await chosen.text());
    } catch (error) {
      fileError = `${chosen.name} is not valid JSON (${String(error.message || error)}). Export the workflow again ` +
        "with Workflow → Export (API), then choose the file.";
    }
    if (!fileError && (!parsed || typeof parsed !== "object" || Array.isArray(parsed))) {
      fileError = `${chosen.name} is JSON, but not a workflow: ComfyUI's API format is an object of nodes.`;
    }
    if (fileError) {
      file.input.setCustomValidity(fileError);
      replace(fileProblem, h("div", { class: "banner banner-danger", role: "alert", id: "workflow-file-error" }, fileError));
    } else {
      useWorkflow(parsed, chosen.name);
    }
    onChange();
  });

  // --- muse ------------------------------------------------------------------------------
  const muse = field("Muse", { kind: "select", options: [["", "None"], ...muses.map((m) => [m.id, m.muse.name])],
    hint: muses.length ? "A saved character: its prompt template wraps your prompt." : "No muses yet: create one on the Muses page." });
  const variation = field("Variation", { kind: "select", options: [] });
  variation.wrap.hidden = true;
  const museOf = (id = muse.input.value) => muses.find((m) => m.id === id) || null;
  const museBox = h("div", { class: "form-grid muse-row" }, muse.wrap, variation.wrap);

  // --- parameters ------------------------------------------------------------------------
  const preset = field("Quality preset", { kind: "select", value: info.default_preset,
    options: Object.keys(Object.values(info.presets)[0] || {}).map((p) => [p, PRESET_LABELS[p] || p]), hint: " " });
  const presetHint = preset.wrap.querySelector(".hint");
  const museHint = h("p", { class: "hint muse-preview", id: "muse-preview", "aria-live": "polite" });

  function widget(name, spec) {
    const label = LABELS[name] || name.replace(/_/g, " ");
    const hint = spec.description && !FROM_PRESET.has(name) ? spec.description : (limits(spec) || null);
    let made;
    if (name === "prompt" || name === "negative_prompt") {
      made = field(label, { kind: "textarea", rows: name === "prompt" ? 3 : 2, maxlength: spec.max_length || 4000,
        placeholder: name === "prompt" ? "a lighthouse on a cliff at dusk, oil painting" : "blurry, low quality" });
    } else if (spec.type === "choice") {
      made = field(label, { kind: "select", options: [["", `Default (${spec.default ?? "template's"})`],
        ...(spec.choices || []).map((c) => [c, c])] });
    } else if (spec.type === "checkpoint") {
      made = checkpoints.length
        ? field(label, { kind: "select", options: [["", "Default"], ...checkpoints.map((c) => [c, c])],
          hint: "What the pool's instances have or will download (Pool settings → Models)." })
        : field(label, { maxlength: 256, placeholder: "default", hint: "The pool offers no checkpoint: an admin adds one in Pool settings → Models." });
    } else if (spec.type === "image") {
      made = field(label, { kind: "select", options: [["", "Choose one of your outputs…"]],
        hint: "One of your outputs (a muse's first reference image when none is chosen)." });
    } else if (name === "batch_size") {
      made = field(label, { kind: "select", options: [1, 2, 3, 4].filter((n) => n <= (spec.max || 4)).map((n) => [String(n), String(n)]),
        value: String(spec.default || 1), hint: "Images per run (up to 4)." });
    } else if (spec.type === "int" || spec.type === "float") {
      const step = spec.type === "int" ? (spec.multiple_of || 1) : (spec.max <= 1 ? 0.01 : 0.1);
      made = field(label, { kind: "number", step, min: spec.min ?? null, inputmode: spec.type === "int" ? "numeric" : "decimal",
        max: name === "seed" ? MAX_SEED : spec.max ?? null, hint: name === "seed" ? "Empty: random (recorded with the job)." : hint,
        placeholder: spec.default !== null && spec.default !== undefined ? String(spec.default) : "" });
    } else {
      made = field(label, { maxlength: spec.max_length || 1000, hint });
    }
    const w = { ...made, type: spec.type, spec };
    if (name === "seed") {
      const dice = h("button", { type: "button", class: "btn btn-icon", "aria-label": "Random seed", title: "Random seed" }, diceIcon());
      dice.addEventListener("click", () => {
        w.input.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
        onChange();
      });
      w.wrap.classList.add("field-seed");
      const box = h("div", { class: "with-button" });
      w.input.replaceWith(box);
      box.append(w.input, dice);
    }
    widgets.set(name, w);
    return w;
  }

  for (const t of info.templates) for (const spec of t.params) if (!widgets.has(spec.name)) widget(spec.name, spec);
  const prompt = widgets.get("prompt");
  if (prompt) prompt.wrap.append(museHint);
  const main = h("div", { class: "form-grid" }, preset.wrap,
    MAIN.filter((n) => widgets.has(n)).map((n) => widgets.get(n).wrap));
  const rest = [...widgets.keys()].filter((n) => !MAIN.includes(n) && n !== "prompt" && n !== "negative_prompt");
  const more = h("details", { class: "more" }, h("summary", {}, "More settings"),
    h("div", { class: "form-grid" }, rest.map((n) => widgets.get(n).wrap)));
  const paramsBox = h("div", { class: "params" }, museBox, prompt?.wrap, widgets.get("negative_prompt")?.wrap, main, more);

  let outputsLoaded = false;
  async function fillImages() {
    const w = widgets.get("image");
    if (!w || outputsLoaded) return;
    outputsLoaded = true;
    const items = await loadOutputs();
    const keep = w.input.value;
    replace(w.input, h("option", { value: "" }, items.length ? "Choose one of your outputs…" : "No outputs yet"),
      items.filter((o) => o.content_type.startsWith("image/")).map((o) => h("option", { value: o.id },
        `${utc(o.created_at)} · ${o.filename}`)));
    w.input.value = keep;
  }

  function sync() {
    const name = template.input.value;
    const own = name === WORKFLOW;
    const t = templates.get(name);
    workflowBox.hidden = !own;
    paramsBox.hidden = own;
    file.input.required = own && !workflow; // a kept workflow (back in the studio) needs no file chosen again
    templateHint.textContent = own ? "A ComfyUI workflow of your own, exported in API format." : (t?.description || "");
    const names = new Set(t ? t.params.map((p) => p.name) : []);
    const presetValues = t ? t.presets[preset.input.value] || {} : {};
    for (const [pname, w] of widgets) {
      const spec = t?.params.find((p) => p.name === pname);
      w.wrap.hidden = own || !names.has(pname);
      w.input.required = Boolean(!own && spec && spec.required && !(pname === "image" && museOf()?.muse.reference_images.length));
      if (spec && w.input.type === "number") {
        if (spec.min !== null && spec.min !== undefined) w.input.min = String(spec.min);
        if (spec.max !== null && spec.max !== undefined && pname !== "seed") w.input.max = String(spec.max);
      }
      if (FROM_PRESET.has(pname)) w.input.placeholder = presetValues[pname] !== undefined ? `${presetValues[pname]} (preset)` : "";
    }
    presetHint.textContent = presetValues.steps
      ? `${presetValues.steps} steps at ${presetValues.width}×${presetValues.height} unless you set them.` : "";
    const m = museOf();
    const vars = m ? m.muse.variations : [];
    variation.wrap.hidden = !vars.length;
    if (variation.input.options.length !== vars.length + 1 || variation.input.dataset.muse !== (m?.id || "")) {
      replace(variation.input, h("option", { value: "" }, "None"), vars.map((v) => h("option", { value: v.name }, v.name)));
      variation.input.dataset.muse = m?.id || "";
    }
    const ckpt = widgets.get("checkpoint");
    if (ckpt && ckpt.input.tagName === "SELECT") {
      ckpt.input.options[0].textContent = `Default (${m?.muse.checkpoint || checkpoints[0] || "the template's"})`;
    }
    const text = prompt ? prompt.input.value.trim() : "";
    museHint.textContent = m ? `With ${m.muse.name}, the prompt becomes: ${musePrompt(m.muse, text || "…", variation.input.value)}` : "";
    if (names.has("image") && !own) fillImages();
  }

  const form = h("form", { class: "studio-form", "aria-label": "New generation" },
    template.wrap, workflowBox, paramsBox, problems, actions);
  form.addEventListener("input", (event) => { // selects fire "input" too
    if (event.target === file.input) return;
    sync();
    onChange();
  });
  sync();

  function read(name, w) {
    const raw = w.input.value;
    if (w.type === "int" || w.type === "float") return raw === "" ? undefined : Number(raw);
    if (name === "batch_size") return Number(raw);
    const text = name === "prompt" || name === "negative_prompt" ? raw : raw.trim();
    return text.trim() === "" ? undefined : text;
  }

  /** Show the API's node errors (or nothing) under the form. */
  function showProblems(details, title) {
    replace(problems, details && details.node_errors ? nodeErrors(details.node_errors, title) : null);
  }

  return {
    el: form,
    showProblems,
    /** The request body, or null when there is nothing to send yet (`why` says what is missing). */
    body() {
      const name = template.input.value;
      if (name === WORKFLOW) return workflow ? { workflow } : null;
      const t = templates.get(name);
      const b = { template: name, preset: preset.input.value };
      for (const spec of t.params) {
        const value = read(spec.name, widgets.get(spec.name));
        if (value !== undefined) b[spec.name] = value;
      }
      if (muse.input.value) b.muse_id = muse.input.value;
      if (muse.input.value && variation.input.value) b.muse_variation = variation.input.value;
      return b;
    },
    /** What is still missing before an estimate (or a generation) makes sense, or "". */
    missing() {
      if (template.input.value === WORKFLOW) {
        if (fileError) return fileError;
        return workflow ? "" : "Choose a workflow file to see its cost.";
      }
      if (prompt && !prompt.input.value.trim()) return "Write a prompt to see the cost.";
      const image = widgets.get("image");
      if (image && !image.wrap.hidden && image.input.required && !image.input.value) {
        return "Choose an input image to see the cost.";
      }
      return "";
    },
    /** The form's values, to keep while you are away from the studio (the workflow itself stays in memory). */
    state() {
      const params = {};
      for (const [pname, w] of widgets) if (w.input.value !== "") params[pname] = w.input.value;
      return { template: template.input.value, preset: preset.input.value, muse: muse.input.value,
        variation: variation.input.value, params, workflow, fileName };
    },
    /** Put kept values back. */
    restore(kept) {
      if (!kept) return;
      if ([...template.input.options].some((o) => o.value === kept.template)) template.input.value = kept.template;
      if (kept.preset) preset.input.value = kept.preset;
      if (kept.muse && museOf(kept.muse)) muse.input.value = kept.muse;
      sync();
      if (kept.variation) variation.input.value = kept.variation;
      for (const [pname, value] of Object.entries(kept.params || {})) {
        const w = widgets.get(pname);
        if (!w) continue;
        if (w.input.tagName === "SELECT" && ![...w.input.options].some((o) => o.value === value)) {
          w.input.append(h("option", { value }, value)); // an input image listed later, a checkpoint gone since
        }
        w.input.value = value;
      }
      if (kept.workflow) {
        useWorkflow(kept.workflow, kept.fileName || "your workflow");
      }
      sync();
    },
    prompt: () => (prompt ? prompt.input.value.trim() : ""),
    setSeed(seed) {
      const w = widgets.get("seed");
      if (w) w.input.value = String(seed);
      onChange();
    },
    setMuse(id) {
      if (museOf(id)) muse.input.value = id;
      sync();
      onChange();
    },
    /** Fill the form from an earlier generation (a muse's rendered prompt is not put back). */
    reuse(job, { newSeed = false } = {}) {
      if (!templates.has(job.template)) return false;
      template.input.value = job.template;
      if (job.preset) preset.input.value = job.preset;
      muse.input.value = job.muse_id && museOf(job.muse_id) ? job.muse_id : "";
      for (const [pname, value] of Object.entries(job.params || {})) {
        const w = widgets.get(pname);
        if (!w || (job.muse_id && (pname === "prompt" || pname === "negative_prompt"))) continue;
        if (pname === "image") continue; // an object name; the picker lists output ids
        if (w.input.tagName === "SELECT" && ![...w.input.options].some((o) => o.value === String(value))) {
          w.input.append(h("option", { value: String(value) }, String(value)));
        }
        w.input.value = String(value);
      }
      const seed = widgets.get("seed");
      if (seed && newSeed) seed.input.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
      sync();
      onChange();
      return true;
    },
    focus: () => (prompt ? prompt.input.focus() : template.input.focus()),
  };
}
