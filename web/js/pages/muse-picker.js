// Choose some of your outputs (reference images of a muse): a modal dialog of thumbnails with checkboxes.

import { h, utc } from "../dom.js";

/** Resolves to the chosen output ids (at most `room`), or null when cancelled. */
export async function pickOutputs({ loadOutputs, exclude = new Set(), room = 8 }) {
  const opener = document.activeElement;
  const titleId = "picker-title";
  const list = h("ul", { class: "picker", "aria-label": "Your outputs" }, h("li", { class: "muted" }, "Loading…"));
  const note = h("p", { class: "hint", role: "status" }, `Choose up to ${room}.`);
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const ok = h("button", { type: "submit", class: "btn btn-primary" }, "Add selected");
  const form = h("form", { method: "dialog", class: "dialog-form" }, h("h2", { id: titleId }, "Add reference images"), note, list,
    h("div", { class: "dialog-actions" }, cancel, ok));
  const dialog = h("dialog", { class: "dialog lightbox", "aria-labelledby": titleId }, form);
  document.body.append(dialog);
  let result = null;
  const done = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && typeof opener.focus === "function" && document.contains(opener)) opener.focus();
      resolve(result);
    });
  });
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    result = [...list.querySelectorAll("input:checked")].map((i) => i.value);
    dialog.close();
  });
  form.addEventListener("change", () => {
    const checked = list.querySelectorAll("input:checked").length;
    for (const box of list.querySelectorAll("input:not(:checked)")) box.disabled = checked >= room;
    note.textContent = `${checked} of up to ${room} chosen.`;
  });
  dialog.showModal();
  cancel.focus();

  const outputs = (await loadOutputs()).filter((o) => o.content_type.startsWith("image/") && !exclude.has(o.id));
  list.replaceChildren(...(outputs.length ? outputs.map((o, i) => h("li", {}, h("label", { title: o.filename },
    h("input", { type: "checkbox", value: o.id }),
    h("img", { src: o.url, alt: "", loading: "lazy" }),
    h("span", {}, `#${i + 1} · ${utc(o.created_at, { seconds: false })}`))))
    : [h("li", { class: "empty" }, "No outputs to choose from: generate some in the studio first.")]));
  ok.disabled = !outputs.length;
  return done;
}
