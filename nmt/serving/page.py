"""The page at `/` of `nmt serve`: a text box in, translations out, and the attention of a
sentence drawn on a canvas when the export has the attention signature. Self-contained (its
script and style are inline; it fetches nothing but this server's REST API)."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

from nmt import constants


@cache
def _template() -> str:
    return resources.files("nmt.serving").joinpath("page.html").read_text(encoding="utf-8")


def render(model_name: str) -> bytes:
    """The page for model `model_name`, as UTF-8."""
    text = _template().replace("{{MODEL_NAME}}", html.escape(model_name, quote=True))
    text = text.replace("{{ATTENTION_SIGNATURE}}", constants.ATTENTION_SIGNATURE)
    return text.encode("utf-8")
