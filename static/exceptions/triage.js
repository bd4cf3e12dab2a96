// Keyboard triage on the case list: j/k move, a claim, e acknowledge, r resolve, x select,
// Enter open, / search, ? help. Bulk selection counts the checked rows; a row action resets
// it. Group rows expand to their cases; the undo notice goes away when its window closes.
(function () {
  var current = -1;
  var beforeHelp = null;
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.case-row:not([hidden])"));
  }
  function focus(index) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    document.querySelectorAll("tr.case-row.current").forEach(function (row) {
      row.classList.remove("current"); });
    all[current].classList.add("current");
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
    var all = document.getElementById("select-all");
    if (all && n === 0) all.checked = false;
  }
  function openHelp(help) {
    beforeHelp = document.activeElement;
    help.hidden = false;
    help.focus();
  }
  function closeHelp(help) {
    help.hidden = true;
    if (beforeHelp && beforeHelp.focus) beforeHelp.focus();
    beforeHelp = null;
  }
  function toggleGroup(button) {
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.firstChild.textContent = open ? "▾ " : "▸ ";
    document.querySelectorAll("tr.member").forEach(function (row) {
      if (row.dataset.group === button.dataset.group) row.hidden = !open;
    });
  }
  function expireUndo() {
    var notice = document.getElementById("undo-notice");
    if (!notice || !notice.dataset.expires) return;
    var left = Number(notice.dataset.expires) * 1000 - Date.now();
    if (left <= 0) { notice.hidden = true; return; }
    clearTimeout(expireUndo.timer);
    expireUndo.timer = setTimeout(function () { notice.hidden = true; }, left);
  }
  document.addEventListener("keydown", function (event) {
    var help = document.getElementById("help");
    if (event.key === "Escape" && help && !help.hidden) { closeHelp(help); return; }
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
      case "Enter": if (tag !== "button" && tag !== "a" && tag !== "summary" && rows()[current])
        window.location = rows()[current].dataset.url; else return; break;
      case "/": event.preventDefault(); document.getElementById("search").focus(); break;
      case "?": if (help) { if (help.hidden) openHelp(help); else closeHelp(help); } break;
      default: return;
    }
  });
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest(".group-toggle");
    if (toggle) { toggleGroup(toggle); return; }
    if (event.target.id === "help-close") closeHelp(document.getElementById("help"));
  });
  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = event.target.checked; });
    }
    count();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (current >= 0) focus(current);
    var config = event.detail && event.detail.requestConfig;
    if (config && config.verb === "post") {
      // A row action: the row shows its new state, and the selection starts again.
      document.querySelectorAll('input[name="ids"]:checked').forEach(function (box) {
        box.checked = false; });
    }
    count();
  });
  document.addEventListener("htmx:oobAfterSwap", expireUndo);
  document.addEventListener("htmx:responseError", function (event) {
    var notice = document.getElementById("undo-notice");
    if (!notice) return;
    notice.textContent = event.detail.xhr.responseText;
    notice.removeAttribute("data-expires");
    notice.hidden = false;
  });
  document.addEventListener("DOMContentLoaded", function () { expireUndo(); count(); });
})();
