"""MkDocs hook: vedit's docstrings name things with Sphinx roles (``:class:`Registry```), which
mkdocstrings renders as text; on the built pages the role prefix is dropped and ``~a.b.C`` shortened
to ``C``, as Sphinx would show them."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:class|func|mod|data|attr|meth|exc|obj):<code>(~?)([^<]*)</code>")


def _name(m: re.Match) -> str:
    tilde, target = m.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, page, config, files) -> str:
    return ROLE.sub(_name, html)
