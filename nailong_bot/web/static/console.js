// The try-an-image box: the dropped or chosen file goes to /nailong/try (same path as the API).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("try-box");
  const input = document.getElementById("try-file");
  const preview = document.getElementById("try-preview");
  const result = document.getElementById("try-result");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const sources = { model: "模型 / model", cache: "缓存 / cache", correction: "纠错 / correction" };

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
    show([["识别中… / checking…"]]);
    try {
      const response = await fetch("/nailong/try", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Content-Type": file.type || "application/octet-stream" },
        body: file,
      });
      const answer = await response.json();
      if (!response.ok) {
        show([[`无法识别 / cannot check: ${answer.detail}`, "error"]]);
        return;
      }
      show([
        [answer.nailong ? "是奶龙 / nailong" : "不是奶龙 / not nailong", answer.nailong ? "hit" : "pass"],
        [` · 得分 / score ${answer.score.toFixed(3)}（阈值 / threshold ${answer.threshold}）`],
        [` · 来源 / source: ${sources[answer.source] || answer.source}`],
        [` · 帧数 / frames: ${answer.frames}`],
      ]);
    } catch (error) {
      show([[`请求失败 / request failed: ${error}`, "error"]]);
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
