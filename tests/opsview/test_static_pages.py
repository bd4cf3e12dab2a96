"""Cold loads: the pages load the partial plotly bundle, and collected static files are
compressed and cached for a year under their content hash."""
import pytest
from django.core.management import call_command

from .test_charts import CHARTS

BASIC_BUNDLE_TRACES = {"bar", "pie", "scatter"}  # plotly.js-basic-dist-min


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_chart_draws_with_the_basic_bundle(name):
    assert {trace["type"] for trace in CHARTS[name]()["data"]} <= BASIC_BUNDLE_TRACES


def test_pages_load_the_small_bundle_not_the_full_one(client, logged_in):
    logged_in("executive")
    html = client.get("/wip/").content.decode()
    assert "vendor/plotly/plotly-basic.min" in html and "plotly/plotly.min.js" not in html


@pytest.fixture
def collected(settings, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.js").write_text("// a script people download\n" * 200)
    settings.STATICFILES_DIRS = [source]
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STATIC_ROOT = tmp_path / "root"
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False
    call_command("collectstatic", "--noinput", verbosity=0)
    return settings.STATIC_ROOT


def test_collected_files_are_hashed_compressed_and_cached_for_a_year(client, db, collected):
    from django.templatetags.static import static

    url = static("app.js")
    assert url != "/static/app.js" and url.endswith(".js")
    name = url.removeprefix("/static/")
    assert (collected / (name + ".gz")).exists() and (collected / (name + ".br")).exists()
    response = client.get(url, headers={"accept-encoding": "br, gzip"})
    assert response.status_code == 200
    assert response["Content-Encoding"] == "br"
    assert "immutable" in response["Cache-Control"] and "max-age=315360000" in response[
        "Cache-Control"]
    response.close()


def test_an_uncollected_file_keeps_its_plain_name(settings):
    from django.templatetags.static import static

    assert static("opsview/no-such-file.css") == "/static/opsview/no-such-file.css"
