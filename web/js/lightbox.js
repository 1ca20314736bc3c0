// A full-size view of outputs: a modal <dialog> (focus kept inside, Escape closes, focus returns to the
// opener), with previous/next (buttons and the arrow keys) and a download link.

import { h, replace } from "./dom.js";
import { media, downloadLink } from "./gen.js";

/**
 * Show `items[index]` full size. `caption(item)` gives extra details (nodes) for an item,
 * `altOf(item)` its text alternative. Resolves when the dialog closes.
 */
export function openLightbox(items, index, { caption = () => null, altOf = (item) => item.filename } = {}) {
  const opener = document.activeElement;
  let at = index;
  const title = h("h2", { id: "lightbox-title" });
  const counter = h("span", { class: "muted", "aria-live": "polite" });
  const stage = h("div", { class: "lightbox-stage" });
  const details = h("div", { class: "lightbox-details" });
  const prev = h("button", { type: "button", class: "btn" }, "← Previous");
  const next = h("button", { type: "button", class: "btn" }, "Next →");
  const close = h("button", { type: "button", class: "btn" }, "Close");
  const download = h("span");
  const dialog = h("dialog", { class: "dialog lightbox", "aria-labelledby": "lightbox-title" },
    h("div", { class: "lightbox-head" }, title, close),
    stage,
    h("div", { class: "lightbox-bar" }, prev, counter, next, download),
    details);

  function show(i) {
    at = Math.max(0, Math.min(items.length - 1, i));
    const item = items[at];
    title.textContent = item.filename || item.id;
    replace(stage, media(item, altOf(item), { lazy: false, cls: "lightbox-media" }));
    replace(details, caption(item));
    replace(download, downloadLink(item));
    counter.textContent = items.length > 1 ? `${at + 1} of ${items.length}` : "";
    prev.disabled = at === 0;
    next.disabled = at === items.length - 1;
    prev.hidden = next.hidden = items.length < 2;
  }

  prev.addEventListener("click", () => show(at - 1));
  next.addEventListener("click", () => show(at + 1));
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
    if (event.key === "ArrowLeft" && at > 0) {
      event.preventDefault();
      show(at - 1);
    } else if (event.key === "ArrowRight" && at < items.length - 1) {
      event.preventDefault();
      show(at + 1);
    }
  });
  dialog.addEventListener("click", (event) => {
    const r = dialog.getBoundingClientRect();
    const outside = event.clientX < r.left || event.clientX > r.right || event.clientY < r.top || event.clientY > r.bottom;
    if (event.target === dialog && outside) dialog.close(); // a click on the backdrop
  });
  document.body.append(dialog);
  show(at);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && typeof opener.focus === "function" && document.contains(opener)) opener.focus();
      resolve();
    });
    dialog.showModal();
    close.focus();
  });
}
