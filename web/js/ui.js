// Shared pieces of every page: the message area, the confirmation dialog, headings and empty states.

import { ApiError } from "./api.js";
import { h, field } from "./dom.js";

const alerts = () => document.getElementById("alerts");

function dismissible(el) {
  const close = h("button", { type: "button", class: "alert-close", "aria-label": "Dismiss message" }, "×");
  close.addEventListener("click", () => el.remove());
  el.append(close);
  return el;
}

/**
 * Show an error (an ApiError or anything thrown) in the accessible alert area; never a stack. One clear message;
 * the code, HTTP status and correlation id sit behind a "Details" disclosure. A new error replaces the earlier
 * ones (they were about something else, or about the same thing said again).
 */
export function showError(error, context = "") {
  if (error && error.name === "AbortError") return;
  const isApi = error instanceof ApiError;
  const code = isApi ? error.code : "ERROR";
  const message = isApi ? error.message : "something went wrong in the page; reload to try again";
  if (!isApi) console.error(error); // the developer console may have the details; the page never does
  const head = [context ? h("strong", {}, `${context}: `) : null, message];
  if (isApi && error.retryAfter) head.push(` (retry after ${error.retryAfter} s)`);
  const canReview = document.body.dataset.admin === "1";
  const meta = h("details", { class: "alert-meta" }, h("summary", {}, "Details"),
    h("div", {}, "Code ", h("code", {}, code),
      isApi && error.status ? ` · HTTP ${error.status}` : null,
      isApi && error.correlationId ? [" · correlation id ", h("code", {}, error.correlationId),
        canReview ? [" · ", h("a", { href: `#/admin/incidents?correlation=${encodeURIComponent(error.correlationId)}` },
          "review its events")] : null] : null));
  const el = dismissible(h("div", { class: "alert alert-error", role: "alert", "data-code": code },
    h("div", {}, h("div", { class: "alert-text" }, head), meta)));
  for (const old of alerts().querySelectorAll(".alert-error")) old.remove();
  alerts().prepend(el);
  while (alerts().children.length > 4) alerts().lastElementChild.remove();
  return el;
}

/** Remove the error messages (an action that failed before has now worked). */
export function clearErrors() {
  for (const el of alerts().querySelectorAll(".alert-error")) el.remove();
}

/** A short success or information message (announced politely); `sticky` ones outlive a page change. */
export function showNotice(message, { timeout = 6000, sticky = false } = {}) {
  const el = dismissible(h("div", { class: "alert alert-ok", role: "status", "data-sticky": sticky ? "1" : null },
    h("div", {}, message)));
  alerts().prepend(el);
  if (timeout) setTimeout(() => el.remove(), timeout);
  return el;
}

/** Remove messages (on a page change: all but the sticky ones). */
export function clearMessages({ keepSticky = false } = {}) {
  for (const el of [...alerts().children]) if (!keepSticky || el.dataset.sticky !== "1") el.remove();
}

/** The page heading (focused on navigation so keyboard and screen-reader users land on it). */
export function pageHeader(title, intro, ...actions) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", { tabindex: "-1" }, title), intro ? h("p", { class: "muted" }, intro) : null),
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

export function section(title, ...children) {
  const id = `sec-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

/** A horizontally scrollable table container that keyboard users can scroll too. */
export function tableWrap(label, table) {
  if (!table.querySelector(":scope > caption")) table.prepend(h("caption", { class: "sr-only" }, label)); // names the table
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label }, table);
}

/**
 * A modal confirmation. `fields`: [{name, label, value, kind}] collected into the result.
 * Resolves to the field values (an object) when confirmed, or null when cancelled (Escape too).
 */
export function confirmDialog({ title, body, confirmLabel = "Confirm", danger = false, fields = [] }) {
  const opener = document.activeElement;
  const titleId = "dlg-title";
  const inputs = {};
  const form = h("form", { method: "dialog", class: "dialog-form" });
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId }, form);
  form.append(h("h2", { id: titleId }, title));
  if (body) form.append(h("div", { class: "dialog-body" }, body));
  for (const spec of fields) {
    const { wrap, input } = field(spec.label, { kind: spec.kind || "text", value: spec.value ?? "", name: spec.name,
      maxlength: spec.maxlength || 200 });
    inputs[spec.name] = input;
    form.append(wrap);
  }
  const cancel = h("button", { type: "button", class: "btn", value: "cancel" }, "Cancel");
  const ok = h("button", { type: "submit", class: danger ? "btn btn-danger" : "btn btn-primary", value: "ok" }, confirmLabel);
  form.append(h("div", { class: "dialog-actions" }, cancel, ok));
  document.body.append(dialog);
  return new Promise((resolve) => {
    let result = null;
    cancel.addEventListener("click", () => dialog.close("cancel"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      result = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.type === "checkbox" ? el.checked : el.value]));
      dialog.close("ok");
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && typeof opener.focus === "function" && document.contains(opener)) opener.focus();
      resolve(result);
    });
    dialog.showModal();
    (fields.length ? inputs[fields[0].name] : cancel).focus();
  });
}

/** Disable a button while an action runs; errors go to the alert area. Returns the action's result. */
export async function busy(button, action, context) {
  const was = button.disabled;
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    showError(error, context);
    return undefined;
  } finally {
    button.disabled = was;
    button.removeAttribute("aria-busy");
    // A disabled button drops focus; give it back so keyboard users stay where they were.
    const lost = !document.activeElement || document.activeElement === document.body;
    if (hadFocus && lost && !button.disabled && document.contains(button)) button.focus();
  }
}
