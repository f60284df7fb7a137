"""Jinja2 templates of the ``prompts`` package (the top-level ``prompts/`` folder, installed with
Muse as package data), rendered strictly: a variable the template names but the caller did not
pass is an error, not an empty string."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import prompts

PROMPTS_DIR = Path(prompts.__file__).resolve().parent


@cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **context) -> str:
    return _environment().get_template(name).render(**context).strip()
