// Keyboard triage on the case list: j/k move, a claim, e acknowledge, r resolve, x select,
// Enter open, / search, ? help. Bulk selection counts the checked rows.
(function () {
  var current = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.case-row")); }
  function focus(index) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (row, i) { row.classList.toggle("current", i === current); });
    all[current].scrollIntoView({block: "nearest"});
  }
  function press(key) {
    var row = rows()[current];
    var button = row && row.querySelector('button[data-key="' + key + '"]');
    if (button) button.click();
  }
  function count() {
    var n = document.querySelectorAll('input[name="ids"]:checked').length;
    var label = document.getElementById("selected-count");
    if (label) label.textContent = n;
  }
  document.addEventListener("keydown", function (event) {
    var help = document.getElementById("help");
    if (event.key === "Escape" && help) { help.hidden = true; return; }
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    switch (event.key) {
      case "j": focus(current + 1); break;
      case "k": focus(current - 1); break;
      case "a": press("a"); break;
      case "e": press("e"); break;
      case "r": press("r"); break;
      case "x": var box = rows()[current] && rows()[current].querySelector('input[name="ids"]');
        if (box) { box.checked = !box.checked; count(); } break;
      case "Enter": if (rows()[current]) window.location = rows()[current].dataset.url; break;
      case "/": event.preventDefault(); document.getElementById("search").focus(); break;
      case "?": if (help) help.hidden = !help.hidden; break;
      default: return;
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = event.target.checked; });
    }
    count();
  });
  document.addEventListener("htmx:afterSwap", function () { if (current >= 0) focus(current); });
})();
