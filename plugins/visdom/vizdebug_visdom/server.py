"""Start a Visdom server whose page loads offline, on loopback only.

``python -m vizdebug_visdom.server -port 8097`` runs visdom's own server (``visdom.server.
run_server.main``, every visdom flag passes through) with three differences:

* ``-bind_local`` is always added: the server listens on 127.0.0.1 only (visdom's
  ``--hostname`` is only the name it prints; without ``-bind_local`` it listens on every
  interface, with no login).
* Its static files come from :func:`static_dir`, which ``scripts/setup-visdom-static.sh`` fills
  from the npm registry: visdom 0.2.4 ships only its own ``main.js`` and styles and downloads
  the rest from CDNs at start, so offline its page had no scripts.
* tornado 6.6 refuses ``static_url("../user/style.css")`` in visdom's ``index.html`` (a path
  outside the static root), which made ``GET /`` answer 403. That URL is served by visdom's
  ``/user/`` route, not from the static directory; :class:`StaticFiles` gives it no version
  instead of refusing the page. Serving still checks that every file is inside the root.

When the static files are missing the server still starts (the vizdebug sink needs only its
API) and says, in one line on stderr, how to get them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tornado.web

__all__ = ["REQUIRED", "StaticFiles", "main", "static_dir"]

#: Files the page cannot render without (visdom's own and the ones from npm).
REQUIRED = (
    "js/main.js",
    "js/jquery.min.js",
    "js/bootstrap.min.js",
    "js/react-react.min.js",
    "js/react-dom.min.js",
    "js/layout_bin_packer.js",
    "js/plotly-plotly.min.js",
    "css/bootstrap.min.css",
    "css/style.css",
)


def _visdom_version() -> str:
    import visdom

    version = Path(visdom.__file__).with_name("VERSION")
    return version.read_text().strip() if version.is_file() else "unknown"


def static_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``scripts/setup-visdom-static.sh`` puts the page's files.

    ``$VIZDEBUG_VISDOM_STATIC``, else ``$XDG_CACHE_HOME/vizdebug/visdom-static-<version>``
    (``~/.cache`` without ``XDG_CACHE_HOME``).
    """
    env = os.environ if environ is None else environ
    chosen = env.get("VIZDEBUG_VISDOM_STATIC")
    if chosen:
        return Path(chosen)
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vizdebug" / f"visdom-static-{_visdom_version()}"


def missing_files(root: Path) -> list[str]:
    """The :data:`REQUIRED` files absent from ``root``."""
    return [name for name in REQUIRED if not (root / name).is_file()]


class StaticFiles(tornado.web.StaticFileHandler):
    """Visdom's static handler, with no version (rather than a 403) for a URL outside the root."""

    @classmethod
    def get_version(cls, settings: dict[str, Any], path: str) -> str | None:
        """The file's content hash, or None for a path outside the static root."""
        try:
            return super().get_version(settings, path)
        except tornado.web.HTTPError:
            return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run visdom's server with ``argv`` (default ``sys.argv[1:]``) plus ``-bind_local``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-bind_local" not in args:
        args.append("-bind_local")
    from visdom.server import app
    from visdom.server.run_server import main as visdom_main

    root = static_dir()
    missing = missing_files(root)
    if missing:
        print(
            f"vizdebug-visdom: the page's files are missing from {root} ({missing[0]}, ...): "
            "run scripts/setup-visdom-static.sh; the API works, the page does not",
            file=sys.stderr,
        )
    else:
        app.tornado_settings["static_path"] = str(root)
    app.tornado_settings["static_handler_class"] = StaticFiles
    sys.argv = [sys.argv[0], *args]
    visdom_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
