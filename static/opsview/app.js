// Every page: the narrow-screen menu, and tables that scroll inside their own box.
(function () {
  // A wide table scrolls sideways inside a focusable region, so the page itself never does
  // and a keyboard user can scroll it too. Runs again on each htmx swap.
  function wrapTables(root) {
    root.querySelectorAll("main table").forEach(function (table) {
      if (table.parentElement.classList.contains("table-scroll")) return;
      var box = document.createElement("div");
      box.className = "table-scroll";
      table.parentNode.insertBefore(box, table);
      box.appendChild(table);
    });
    root.querySelectorAll(".table-scroll:not([tabindex])").forEach(function (box) {
      var table = box.querySelector("table");
      var caption = table && table.querySelector("caption");
      var panel = box.parentElement.closest("section, .panel, article");
      var heading = panel && panel.querySelector("h2, h3");
      box.setAttribute("tabindex", "0");
      box.setAttribute("role", "region");
      box.setAttribute("aria-label", (caption && caption.textContent.trim())
        || (heading && heading.textContent.trim()) || "Table");
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector(".navtoggle");
    var nav = document.getElementById("mainnav");
    if (toggle && nav) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        nav.classList.toggle("open", open);
      });
    }
    wrapTables(document);
    document.body.addEventListener("htmx:afterSettle", function (event) {
      wrapTables(event.target);
    });
  });
})();
