// The pool's settings form (PUT /api/v1/pool/config, models included, with an offer to replace instances after a
// change of models) and the provider key form (POST /api/v1/admin/tokens).

import { api, ApiError } from "../api.js";
import { h, replace, field } from "../dom.js";
import { busy, showNotice, showError } from "../ui.js";

function numberOrNull(input) {
  const raw = input.value.trim();
  return raw === "" ? null : Number(raw);
}

function lines(input) {
  return input.value.split(/[\n,]+/).map((x) => x.trim()).filter(Boolean);
}

function sameList(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Offer to replace the idle instances rented with the old template (busy ones finish their job first). */
function replaceOffer(box, instances) {
  const idle = instances().filter((i) => i.state === "ready" || i.state === "loading");
  if (!idle.length) {
    replace(box);
    box.hidden = true;
    return;
  }
  const go = h("button", { type: "button", class: "btn btn-primary" }, `Replace ${idle.length} instance${idle.length === 1 ? "" : "s"}`);
  go.addEventListener("click", async () => {
    const done = await busy(go, async () => {
      for (const inst of idle) {
        await api("POST", `/api/v1/pool/instances/${encodeURIComponent(inst.id)}/terminate`,
          { body: { reason: "replaced: new template models" }, as: "admin" });
      }
      return true;
    }, "Replace instances");
    if (done) {
      replace(box);
      box.hidden = true;
      showNotice(`Replacing ${idle.length} instance(s): new ones come up with the new models.`);
    }
  });
  const later = h("button", { type: "button", class: "btn" }, "Not now");
  later.addEventListener("click", () => { replace(box); box.hidden = true; });
  replace(box, h("p", {}, h("strong", {}, "Running instances still have the old models. "),
    "New instances download the new list. Replace the idle ones now (claimed ones finish their job and are kept)?"),
  h("div", { class: "inline" }, go, later));
  box.hidden = false;
}

/** The settings card: `update(config, refill)` fills it from the pool unless the user is editing.
 * `instances()`: the pool's live instances (to offer replacing them after a change of models). */
export function settingsSection({ instances = () => [] } = {}) {
  const f = {
    desired: field("Desired size", { kind: "number", min: 0, max: 64, step: 1, required: true,
      hint: "Ready instances the pool keeps warm." }),
    max: field("Maximum size", { kind: "number", min: 0, max: 64, step: 1, required: true }),
    idle: field("Idle timeout (seconds)", { kind: "number", min: 0, step: 1, required: true,
      hint: "An unclaimed instance beyond the desired size is terminated after this long." }),
    gpus: field("GPU names", { maxlength: 500, wide: true, hint: "Comma-separated, e.g. RTX 4090, L40S." }),
    maxDph: field("Max $/h per instance", { kind: "number", min: 0, step: "0.01", required: true }),
    minDisk: field("Min disk (GB)", { kind: "number", min: 0, step: 1, required: true }),
    minRel: field("Min reliability (0–1)", { kind: "number", min: 0, max: 1, step: "0.01", required: true }),
    verified: field("Verified hosts only", { kind: "checkbox" }),
    capDph: field("Spend cap ($/h)", { kind: "number", min: 0, step: "0.01", hint: "Empty: no cap. Reaching a cap turns safe mode on." }),
    capDay: field("Spend cap ($ per UTC day)", { kind: "number", min: 0, step: "0.01", hint: "Empty: no cap." }),
    models: field("Models to download (URLs)", { kind: "textarea", wide: true, rows: 3, spellcheck: "false",
      hint: "One Hugging Face or Civitai download URL per line. Each new instance downloads them; the file name is the checkpoint name the studio offers." }),
    required: field("Required models (file names)", { kind: "textarea", wide: true, rows: 2, spellcheck: "false",
      hint: "One per line. An instance counts as Ready only once ComfyUI lists these; empty: as soon as it answers." }),
  };
  const replaceBox = h("div", { class: "banner", role: "region", "aria-label": "Replace instances", hidden: true });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Save settings");
  const revert = h("button", { type: "button", class: "btn" }, "Discard changes");
  const form = h("form", { class: "settings", "aria-labelledby": "pool-settings" },
    h("fieldset", {}, h("legend", {}, "Size"), h("div", { class: "form-grid" }, f.desired.wrap, f.max.wrap, f.idle.wrap)),
    h("fieldset", {}, h("legend", {}, "Offer filter"),
      h("div", { class: "form-grid" }, f.gpus.wrap, f.maxDph.wrap, f.minDisk.wrap, f.minRel.wrap, f.verified.wrap)),
    h("fieldset", {}, h("legend", {}, "Spend caps"), h("div", { class: "form-grid" }, f.capDph.wrap, f.capDay.wrap)),
    h("fieldset", {}, h("legend", {}, "Models"), h("div", { class: "form-grid" }, f.models.wrap, f.required.wrap)),
    h("div", { class: "form-actions" }, save, revert), replaceBox);
  let dirty = false;
  let latest = null;
  form.addEventListener("input", () => { dirty = true; });

  function fill(config) {
    f.desired.input.value = config.desired_size;
    f.max.input.value = config.max_size;
    f.idle.input.value = config.idle_timeout_s;
    f.gpus.input.value = (config.offer_filter.gpu_names || []).join(", ");
    f.maxDph.input.value = config.offer_filter.max_dph;
    f.minDisk.input.value = config.offer_filter.min_disk_gb;
    f.minRel.input.value = config.offer_filter.min_reliability;
    f.verified.input.checked = Boolean(config.offer_filter.verified_only);
    f.capDph.input.value = config.spend_caps.max_dph ?? "";
    f.capDay.input.value = config.spend_caps.max_per_day ?? "";
    f.models.input.value = (config.template.models || []).join("\n");
    f.required.input.value = (config.readiness.required_models || []).join("\n");
    dirty = false;
  }

  revert.addEventListener("click", () => latest && fill(latest));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      desired_size: Number(f.desired.input.value),
      max_size: Number(f.max.input.value),
      idle_timeout_s: Number(f.idle.input.value),
      offer_filter: {
        gpu_names: f.gpus.input.value.split(",").map((g) => g.trim()).filter(Boolean),
        max_dph: Number(f.maxDph.input.value),
        min_disk_gb: Number(f.minDisk.input.value),
        min_reliability: Number(f.minRel.input.value),
        verified_only: f.verified.input.checked,
      },
      spend_caps: { max_dph: numberOrNull(f.capDph.input), max_per_day: numberOrNull(f.capDay.input) },
      template: { models: lines(f.models.input) },
      readiness: { required_models: lines(f.required.input) },
    };
    const before = latest;
    const config = await busy(save, () => api("PUT", "/api/v1/pool/config", { body, as: "admin" }), "Pool settings");
    if (config) {
      latest = config;
      fill(config);
      showNotice("Pool settings saved.");
      const changed = !before || !sameList(before.template.models || [], config.template.models || [])
        || !sameList(before.readiness.required_models || [], config.readiness.required_models || []);
      if (changed) replaceOffer(replaceBox, instances);
    }
  });

  const element = h("section", { class: "card", "aria-labelledby": "pool-settings" },
    h("h2", { id: "pool-settings" }, "Settings"), form);
  return {
    element,
    update(config, refill) {
      latest = config;
      if (refill && !dirty) fill(config);
    },
  };
}

/** The provider key card: the key goes to the gateway once and is never kept or shown. */
export function providerKeySection() {
  const key = field("Vast.ai API key", { kind: "password", autocomplete: "off", maxlength: 512,
    spellcheck: "false", hint: "Sent once to the pool (kept in its memory only). Accepted only when this page is opened on the gateway's own machine." });
  const send = h("button", { type: "submit", class: "btn btn-primary" }, "Set provider key");
  const explain = h("div", { class: "banner banner-danger", role: "alert", hidden: true });
  const form = h("form", { class: "inline-form" }, key.wrap, send);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    explain.hidden = true;
    const value = key.input.value.trim();
    key.input.value = ""; // never kept in the page, whatever the outcome
    if (!value) {
      showError(new ApiError(0, "INPUT", "enter the provider's API key first"), "Provider key");
      key.input.focus();
      return;
    }
    send.disabled = true;
    try {
      const result = await api("POST", "/api/v1/admin/tokens", { body: { vastai_api_key: value }, as: "admin" });
      showNotice(`Provider key updated for ${result.updated.join(", ")}.`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 403 && /loopback/i.test(error.message)) {
        replace(explain, h("strong", {}, "Not accepted from this address. "),
          "The gateway takes provider keys only from its own machine (loopback). Open Stoker at ",
          h("code", {}, `http://127.0.0.1:${window.location.port || "8080"}/`), " on the gateway's host (or through an SSH tunnel such as ",
          h("code", {}, `ssh -L ${window.location.port || "8080"}:127.0.0.1:${window.location.port || "8080"} host`), ") and enter it there.");
        explain.hidden = false;
      } else {
        showError(error, "Provider key");
      }
    } finally {
      send.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "provider-key" }, h("h2", { id: "provider-key" }, "Provider key"), form, explain);
}
