// allot console: progressive enhancement only (every page works without it). Hovering or
// focusing a part of a bucket-space bar writes what it is below the bar and marks its row.
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
});
