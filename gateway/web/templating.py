"""The jinja2 environment for Meetgate's pages, loaded from the `meetgate_templates` package."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FunctionLoader, select_autoescape

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".js": "text/javascript",
}


def _load(name: str) -> str | None:
    resource = files("meetgate_templates").joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=FunctionLoader(_load),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


@lru_cache(maxsize=16)
def static_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of a file under templates/static, or None."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    resource = files("meetgate_templates").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes(), STATIC_TYPES[suffix]
