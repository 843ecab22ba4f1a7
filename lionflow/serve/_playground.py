"""``GET /``: the playground, one page of static HTML, CSS and JS shipped in the package.

The page talks to the server's own API (``/v1/models``, ``/v1/chat/completions``, ``/v1/sessions``,
``/v1/flows``) from the browser, so it needs no build step and fetches nothing from elsewhere: its
Content-Security-Policy allows this origin only. The page and its two files need no API key (the
page asks for one when the API refuses it); everything it then asks for does.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from lionflow.serve._context import ServeContext

ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
}
PREFIX = "/playground/"

# Only this origin: no script, style, font or image comes from anywhere else, and no frame may embed it.
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("lionflow.serve").joinpath("playground", name).read_bytes()


def register(app: FastAPI, context: ServeContext) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)

    @app.get(PREFIX + "{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            return Response(b"not found\n", status_code=404, media_type="text/plain")
        return Response(_read(name), media_type=media_type, headers=_HEADERS)
