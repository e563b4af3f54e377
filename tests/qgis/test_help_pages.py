"""Every algorithm's Help button opens a page shipped with the plugin that describes it."""

from __future__ import annotations

import html

from qgis.PyQt.QtCore import QUrl

from mus_qgis.bridge.qgis_enums import PARAMETER_HIDDEN
from mus_qgis.shared.resources import help_page
from scripts.help_pages import OUTPUT, rendered_pages
from scripts.package import plugin_files


def test_every_algorithm_has_a_help_url_to_a_shipped_page(mus_provider):
    shipped = {name for _, name in plugin_files()}
    algorithms = mus_provider.algorithms()
    assert len(algorithms) >= 16
    for algorithm in algorithms:
        url = QUrl(algorithm.helpUrl())
        assert url.isLocalFile(), f"{algorithm.id()} has no help URL to a local page: {url}"
        page = help_page(algorithm.name())
        assert url.toLocalFile() == str(page) and page.is_file(), algorithm.id()
        assert f"mus_qgis/docs/algorithms/{page.name}" in shipped, f"{page.name} is not packaged"


def test_each_page_describes_its_algorithm(mus_provider):
    for algorithm in mus_provider.algorithms():
        text = help_page(algorithm.name()).read_text(encoding="utf-8")
        assert f"<h1>{html.escape(algorithm.displayName())}</h1>" in text, algorithm.id()
        first_paragraph = algorithm.shortHelpString().split("\n\n")[0]
        assert html.escape(first_paragraph).replace("\n", "<br>") in text, algorithm.id()
        for parameter in algorithm.parameterDefinitions():
            if not parameter.flags() & PARAMETER_HIDDEN:
                assert html.escape(parameter.name()) in text, (algorithm.id(), parameter.name())
        if algorithm.name() != "pipeline":
            assert f"qgis_process run {algorithm.id()} --" in text


def test_the_pages_are_those_the_algorithms_make_and_no_others(mus_provider):
    """The built pages are what the algorithms make now: a renamed or removed algorithm leaves no
    stale page, a new one has its page, and a changed help text or parameter shows. (`make test`
    builds them first; by hand: `make help-pages`.)"""
    pages = rendered_pages(mus_provider)
    built = {path.name: path.read_text(encoding="utf-8") for path in OUTPUT.glob("*.html")}
    assert set(built) == set(pages), "run `make help-pages`"
    stale = sorted(name for name, text in pages.items() if built[name] != text)
    assert stale == [], f"{stale} differ from what the algorithms make: run `make help-pages`"
    index = built["index.html"]
    for algorithm in mus_provider.algorithms():
        assert f"href='{help_page(algorithm.name()).name}'" in index
