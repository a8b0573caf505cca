// allot console: progressive enhancement only (every page works without it). Hovering or
// focusing a part of a bucket-space bar writes what it is below the bar and marks its row.
// "Add a row" in a form's table of inputs copies its last row with the next index (without the
// script, a form offers spare empty rows, and more after each preview).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const seg of document.querySelectorAll("svg.bar .seg")) {
    const show = () => {
      const out = document.getElementById(seg.dataset.target);
      if (out) out.textContent = seg.dataset.detail || "";
      const section = seg.closest("section");
      const n = seg.getAttribute("aria-label").split(".")[0];
      if (section) {
        for (const row of section.querySelectorAll("tr[data-segment]")) {
          row.classList.toggle("active", row.dataset.segment === n);
        }
      }
    };
    seg.addEventListener("mouseenter", show);
    seg.addEventListener("focus", show);
  }
  for (const button of document.querySelectorAll("button[data-add-row]")) {
    const body = document.querySelector(`#${button.dataset.addRow} tbody`);
    if (!body || !body.lastElementChild) continue;
    button.hidden = false;
    button.addEventListener("click", () => {
      const last = body.lastElementChild;
      const row = last.cloneNode(true);
      const next = body.children.length;
      for (const el of row.querySelectorAll("[name], [id]")) {
        if (el.name) el.name = el.name.replace(/\[\d+\]/, `[${next}]`);
        if (el.id) el.id = el.id.replace(/-\d+-/, `-${next}-`);
        el.removeAttribute("aria-invalid");
        el.removeAttribute("aria-describedby");
        if (el.tagName === "INPUT") el.value = "";
        if (el.tagName === "SELECT") el.selectedIndex = last.querySelector("select") ? last.querySelector("select").selectedIndex : 0;
      }
      for (const ul of row.querySelectorAll(".field-errors")) ul.remove();
      body.appendChild(row);
      const first = row.querySelector("input, select");
      if (first) first.focus();
    });
  }
});
