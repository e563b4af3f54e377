"""The imagery's attribution, as its licences ask: sources, creators, licence pages, adaptation."""

from __future__ import annotations

from mus_qgis.shared.attribution import (
    CREATORS_SHOWN,
    Credit,
    attribution_html,
    attribution_lines,
    licence_facts,
)


def test_each_source_is_credited_with_its_creators_licence_and_page():
    credits = [
        Credit("mapillary", "CC BY-SA 4.0", "ana"),
        Credit("mapillary", "CC BY-SA 4.0", "bo"),
        Credit("mapillary", "CC BY-SA 4.0", "ana"),
        Credit("streetview", "Google Maps Platform terms", "Google"),
        Credit("panoramax", "etalab-2.0 (panoramax.ign.fr)", "IGN"),
        Credit("", "", ""),  # a point without imagery credits nobody
    ]
    assert attribution_lines(credits) == [
        "Mapillary: 3 images by ana, bo, CC BY-SA 4.0 "
        "(https://creativecommons.org/licenses/by-sa/4.0/).",
        "Google Street View: 1 image by Google, Google Maps Platform terms "
        "(https://cloud.google.com/maps-platform/terms); Imagery © Google.",
        "Panoramax: 1 image by IGN, etalab-2.0 (panoramax.ign.fr) "
        "(https://www.etalab.gouv.fr/licence-ouverte-open-licence).",
        "Images were cut into views and read by CLIP; what is shown is derived from them, and "
        "what derives from share-alike (BY-SA) imagery is shared under the same licence.",
    ]


def test_no_share_alike_words_without_share_alike_imagery_and_nothing_without_imagery():
    lines = attribution_lines([Credit("panoramax", "etalab-2.0", "IGN")])
    assert (
        lines[-1]
        == "Images were cut into views and read by CLIP; what is shown is derived from them."
    )
    assert attribution_lines([]) == [] and attribution_html([]) == ""
    assert attribution_lines([Credit("", "CC BY-SA 4.0", "x")]) == []


def test_many_creators_are_counted_after_the_first_ones():
    credits = [
        Credit("kartaview", "KartaView terms (CC BY-SA 4.0)", f"u{i:02d}") for i in range(20)
    ]
    (line, _) = attribution_lines(credits)
    named = [f"u{i:02d}" for i in range(CREATORS_SHOWN)]
    assert line.startswith(f"KartaView: 20 images by {', '.join(named)} and 8 more")
    assert "u19" not in line


def test_an_unknown_licence_is_named_as_recorded_and_html_is_escaped():
    assert licence_facts("Some <odd> licence").name == "Some <odd> licence"
    block = attribution_html([Credit("local", "Some <odd> licence", "me & you")])
    assert "&lt;odd&gt;" in block and "me &amp; you" in block and "<h2>Imagery</h2>" in block
