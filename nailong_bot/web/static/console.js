// The notice after a change can be dismissed.
// The try-an-image box: the dropped or chosen file goes to /nailong/try (same path as the API). Its words come
// with the page (data-* of #try-result), in the page's language. Everything else works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const dismiss = document.querySelector(".notice > .dismiss");
  if (dismiss) {
    dismiss.hidden = false;
    dismiss.addEventListener("click", () => dismiss.parentElement.remove());
  }

  const box = document.getElementById("try-box");
  const input = document.getElementById("try-file");
  const preview = document.getElementById("try-preview");
  const result = document.getElementById("try-result");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const words = result.dataset;
  const sources = { model: words.sourceModel, cache: words.sourceCache, correction: words.sourceCorrection };

  function show(parts) {
    result.replaceChildren(...parts.map(([text, cls]) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (cls) span.className = cls;
      return span;
    }));
  }

  async function tryImage(file) {
    if (!file) return;
    preview.src = URL.createObjectURL(file);
    preview.classList.add("shown");
    show([[words.checking]]);
    try {
      const response = await fetch("/nailong/try", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Content-Type": file.type || "application/octet-stream" },
        body: file,
      });
      const answer = await response.json();
      if (!response.ok) {
        show([[`${words.cannot}: ${answer.detail}`, "error"]]);
        return;
      }
      show([
        [answer.nailong ? words.nailong : words.notNailong, answer.nailong ? "hit" : "pass"],
        [` · ${words.score} ${answer.score.toFixed(3)} (${words.threshold} ${answer.threshold})`],
        [` · ${words.source}: ${sources[answer.source] || answer.source}`],
        [` · ${words.frames}: ${answer.frames}`],
      ]);
    } catch (error) {
      show([[`${words.failed}: ${error}`, "error"]]);
    }
  }

  input.addEventListener("change", () => tryImage(input.files[0]));
  box.addEventListener("dragover", (event) => { event.preventDefault(); box.classList.add("dragging"); });
  box.addEventListener("dragleave", () => box.classList.remove("dragging"));
  box.addEventListener("drop", (event) => {
    event.preventDefault();
    box.classList.remove("dragging");
    tryImage(event.dataTransfer.files[0]);
  });
});
