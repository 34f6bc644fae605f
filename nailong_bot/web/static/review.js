// The review page: a label is posted without leaving the page (the tile fades out); keys J/K move, Y/N label.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const tiles = () => Array.from(document.querySelectorAll("li.waiting:not(.done)"));
  let current = 0;

  function focus(index) {
    const list = tiles();
    if (!list.length) return;
    current = Math.max(0, Math.min(index, list.length - 1));
    document.querySelectorAll("li.waiting.current").forEach((tile) => tile.classList.remove("current"));
    list.forEach((tile, i) => tile.classList.toggle("current", i === current));
    list[current].focus({ preventScroll: false });
  }

  async function label(form, value) {
    const body = new URLSearchParams(new FormData(form));
    body.set("label", value);
    const response = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body,
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  async function labelTile(tile, value) {
    const form = tile.querySelector("form.labels");
    tile.classList.add("done");
    try {
      await label(form, value);
      tile.dataset.labelled = value;
    } catch (error) {
      tile.classList.remove("done");
      alert(`保存失败 / not saved: ${error}`);
      return;
    }
    focus(current);
  }

  document.querySelectorAll("form.labels").forEach((form) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      labelTile(form.closest("li.waiting"), event.submitter ? event.submitter.value : "other");
    });
  });
  document.querySelectorAll("li.waiting").forEach((tile) => {
    tile.addEventListener("click", () => { current = tiles().indexOf(tile); focus(current); });
  });
  document.getElementById("group-filter").addEventListener("change", (event) => event.target.form.submit());
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    const tile = tiles()[current];
    if (key === "j" || key === "arrowright") focus(current + 1);
    else if (key === "k" || key === "arrowleft") focus(current - 1);
    else if (tile && key === "y") labelTile(tile, "nailong");
    else if (tile && key === "n") labelTile(tile, "other");
    else return;
    event.preventDefault();
  });
  focus(0);
});
