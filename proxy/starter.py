"""The demo edge shipped inside the package, and ``edgeproxy init``.

``DEMO_CONFIG`` is the config ``edgeproxy serve`` / ``check`` use when no ``--config`` is given: it lives in
the installed package (``proxy/demo/edge.yaml`` beside its ``site/`` folder), so it works from any folder.
``init(directory)`` is called by ``edgeproxy init [DIR]``: it copies that config and site into ``DIR`` so
the operator can edit them; the result lists what was written.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

__all__ = ["DEMO_CONFIG", "DEMO_DIR", "InitError", "init", "version"]

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_CONFIG = DEMO_DIR / "edge.yaml"

_CONFIG_NAME = "edge.yaml"
_SITE_NAME = "site"


class InitError(Exception):
    """``init`` would overwrite something: the message names it."""


def version() -> str:
    """The installed distribution's version (``edgeproxy --version``); ``unknown`` when run from a source
    tree that was never installed."""
    try:
        return metadata.version("edgeproxy")
    except metadata.PackageNotFoundError:
        return "unknown"


def init(directory: Path) -> list[Path]:
    """Write ``directory/edge.yaml`` and ``directory/site/`` (created as needed); returns the paths written.
    Raises ``InitError`` when either already exists: nothing is overwritten."""
    config = directory / _CONFIG_NAME
    site = directory / _SITE_NAME
    for path in (config, site):
        if path.exists():
            raise InitError(f"{path} already exists; choose another folder or remove it first")
    directory.mkdir(parents=True, exist_ok=True)
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    config.write_text(_starter_header() + _strip_demo_header(text), encoding="utf-8")
    shutil.copytree(DEMO_DIR / _SITE_NAME, site)
    return [config, site]


def _strip_demo_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _starter_header() -> str:
    return (
        "# A starter edge written by `edgeproxy init`: a static site (./site, next to this file) cached at\n"
        "# the edge. Edit it, then `edgeproxy check --config edge.yaml` and\n"
        "# `edgeproxy serve --config edge.yaml`.\n"
        "# Point an origin at your own server with `url: http://127.0.0.1:3000` instead of `root:`.\n"
        "# Every key is described in config/reference.yaml of the edgeproxy repository.\n"
    )
