"""Jinja2 templates from the repository's ``templates/`` (shipped as ``dcctl.templates``): strict, escaped."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def _templates_dir() -> Path:
    try:
        found = resources.files("dcctl.templates")
        if found.is_dir():
            return Path(str(found))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2  # only when something is rendered: a plan with nothing to make renders nothing

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml", "xml.j2", "html.j2"), default=False),
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
