"""Every template is used: referenced by its path from the code or from another template, or
rendered as a dashboard panel (`reporting.views.panel` renders opsview/partials/<panel>.html).
A template nothing renders is dead weight that still has to be kept accessible and safe."""
from pathlib import Path

from reporting.views import PANEL_TEMPLATES, PANELS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
CODE = ["core", "config", "opsview", "ingestion", "exceptions", "reporting", "integrations",
        "simulator"]


def unreferenced(templates, code_text, rendered):
    """Templates under `templates` whose quoted path appears neither in `code_text` nor in
    another template, and that are not in `rendered` (names rendered by computed path)."""
    found = []
    pages = {path: path.read_text() for path in sorted(templates.rglob("*.html"))}
    for path in pages:
        name = path.relative_to(templates).as_posix()
        # A template's own text never counts as a reference to itself.
        text = "\n".join([code_text, *(body for other, body in pages.items() if other != path)])
        if f'"{name}"' not in text and f"'{name}'" not in text and name not in rendered:
            found.append(name)
    return found


def test_every_template_is_referenced():
    code_text = "\n".join(path.read_text() for app in CODE for path in (ROOT / app).rglob("*.py"))
    panels = {f"opsview/partials/{PANEL_TEMPLATES.get(name, name)}.html" for name in PANELS}
    assert unreferenced(TEMPLATES, code_text, panels) == []


def test_an_unreferenced_template_is_found(tmp_path):
    """The check can fail: only the template nobody names, includes or renders is reported."""
    (tmp_path / "app" / "partials").mkdir(parents=True)
    (tmp_path / "app" / "page.html").write_text('{% include "app/partials/used.html" %}')
    (tmp_path / "app" / "partials" / "used.html").write_text("<p>used</p>")
    (tmp_path / "app" / "partials" / "panel.html").write_text("<p>a panel</p>")
    (tmp_path / "app" / "partials" / "orphan.html").write_text('<p>"app/partials/orphan.html"</p>')
    code = 'render(request, "app/page.html")'
    assert unreferenced(tmp_path, code, {"app/partials/panel.html"}) == [
        "app/partials/orphan.html"]
