// Draws every plotly chart spec embedded in the page, and again after each htmx swap.
(function () {
  function draw(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      window.Plotly.react(el, spec.data, spec.layout, {displayModeBar: false, responsive: true});
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    draw(document);
    document.body.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
  });
})();
