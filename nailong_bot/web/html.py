"""Pages from templates: every value HTML-escaped unless it is :class:`Html` built here."""

from __future__ import annotations

import html
from string import Template


class Html(str):
    """Markup built by the console from escaped values: inserted into a page as it is."""


def render(template: str, **values: object) -> Html:
    escaped = {k: v if isinstance(v, Html) else html.escape(str(v)) for k, v in values.items()}
    return Html(Template(template).substitute(escaped))
