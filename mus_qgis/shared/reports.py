"""The top of every HTML report, the engine's and the QGIS side's alike: what made the numbers
below, and a banner when the model's weights are random (the labels then say nothing about the
images, however tidy the tables). Plain Python: QGIS's process imports it too."""

from __future__ import annotations

import html

REPORT_STYLE = (
    "body{font-family:sans-serif}td,th{padding:2px 6px}"
    ".warning{background:#fde0dd;border:2px solid #d7301f;padding:6px 10px}"
    ".note{background:#f0f0f0;border-left:4px solid #888;padding:6px 10px}"
)


def model_words(settings: dict) -> str:
    """The model and weights as a reader names them: 'ViT-B-32, laion2b_s34b_b79k weights'."""
    weights = settings.get("checkpoint") or settings.get("pretrained")
    # float32 is the exact default; any other number format is said, as the scores differ.
    precision = settings.get("precision") or "float32"
    number = "" if precision == "float32" else f", in {precision}"
    if settings.get("untrained"):
        return f"{settings.get('model', '?')}, random (untrained) weights{number}"
    return f"{settings.get('model', '?')}, {weights or '?'} weights{number}"


def report_start(
    title: str,
    runs: list[dict],
    *,
    style: str = "",
    what: str = "numbers",
    data: list[str] | tuple = (),
    credits: list | tuple = (),
) -> str:
    """The report's head, title, random-weights banner and 'Classified by …' line, from the run
    settings of the classifications it reads (``classification_settings`` of each layer), and
    which layers it read and where they lie (``data``: one line each), and whose imagery it
    read, as the imagery's licences ask (``credits``: ``attribution.Credit`` per image)."""
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{REPORT_STYLE}{style}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    if any(run.get("untrained") for run in runs):
        parts.append(
            "<p class='warning'><b>Random weights.</b> The model that classified these images "
            f"has untrained weights: the {what} below say nothing about the images.</p>"
        )
    if data:
        parts.append("<p>Data: " + "; ".join(html.escape(line) for line in data) + ".</p>")
    models = [model_words(run) for run in runs if run.get("model")]
    if models:
        parts.append(
            "<p>Classified by "
            + "; ".join(html.escape(words) for words in dict.fromkeys(models))
            + ".</p>"
        )
    if credits:
        from .attribution import attribution_html

        parts.append(attribution_html(list(credits)))
    return "".join(parts)
