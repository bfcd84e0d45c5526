"""The member web app's static files (``muxernode/web/``), served by the RPC's ASGI app.

    GET /               index.html
    GET /static/<path>  a file of the app (modules, css, translations, vendored libraries)

The page speaks to the node only through the public JSON-RPC (POST /rpc) and WebSocket
(GET /ws) API, like any outside app. Files are read once, at the first request, into a
table keyed by their path: a request is answered only when its path is a key of that table,
so no path a client sends (``..``, encoded slashes, symlinks, absolute paths) can reach a
file outside ``web/`` or a file the table did not list.

Headers: a strict Content-Security-Policy (scripts, styles, images and fonts from this
origin only, plus the hash of the page's one inline import map; connections to this origin
and the WebSocket of the same host), ``nosniff``, no referrer, no framing. Caching:
``no-cache`` with an ETag (the content hash), so a browser revalidates cheaply and never runs
stale modules after a node upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WEB_DIR", "StaticFiles", "handles"]

WEB_DIR = Path(__file__).with_name("web")
STATIC_PREFIX = "/static/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# a Host header goes into the CSP's connect-src: only host[:port] characters may
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_IMPORT_MAP = re.compile(rb'<script type="importmap">(.*?)</script>', re.S)

Send = Any


def handles(path: str) -> bool:
    """The path belongs to the web app (answered by ``StaticFiles``, 404 if unknown)."""
    return path == "/" or path.startswith(STATIC_PREFIX)


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: bytes


class StaticFiles:
    """The app's files in memory, and the ASGI answer for one request."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        self.root = root
        self._files: dict[str, _File] | None = None
        self._script_hashes = ""

    def _load(self) -> dict[str, _File]:
        if self._files is not None:
            return self._files
        files: dict[str, _File] = {}
        # bounded: the package's own tree (a few hundred files at most)
        for path in sorted(self.root.rglob("*")):
            ctype = CONTENT_TYPES.get(path.suffix)
            if ctype is None or not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(self.root).as_posix()
            if "node_modules" in rel.split("/"):
                continue
            body = path.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
            files[rel] = _File(body, ctype, etag)
        index = files.get("index.html")
        if index is not None:
            hashes = [
                "'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
                for m in _IMPORT_MAP.findall(index.body)
            ]
            self._script_hashes = " ".join(hashes)
        self._files = files
        return files

    def lookup(self, path: str) -> _File | None:
        files = self._load()
        if path == "/":
            return files.get("index.html")
        if not path.startswith(STATIC_PREFIX):
            return None
        return files.get(path[len(STATIC_PREFIX):])

    def csp(self, host: str | None) -> str:
        self._load()
        connect = "'self'"
        if host is not None and _HOST.fullmatch(host):
            connect += f" ws://{host} wss://{host}"
        script = "'self'" + (f" {self._script_hashes}" if self._script_hashes else "")
        return (f"default-src 'none'; script-src {script}; style-src 'self'; "
                f"img-src 'self' data:; font-src 'self'; connect-src {connect}; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    async def serve(self, scope: Mapping[str, Any], send: Send) -> None:
        headers = {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", ())}
        method = scope.get("method", "GET")
        found = self.lookup(scope.get("path", ""))
        if found is None:
            await _send(send, 404, b"not found\n", "text/plain; charset=utf-8", [])
            return
        if method not in ("GET", "HEAD"):
            await _send(send, 405, b"use GET\n", "text/plain; charset=utf-8",
                        [(b"allow", b"GET, HEAD")])
            return
        host = headers.get(b"host", b"").decode("latin-1") or None
        extra = [
            (b"etag", found.etag),
            (b"cache-control", b"no-cache"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", self.csp(host).encode()),
        ]
        if headers.get(b"if-none-match") == found.etag:
            await _send(send, 304, b"", None, extra)
            return
        body = b"" if method == "HEAD" else found.body
        await _send(send, 200, body, found.content_type, extra, length=len(found.body))


async def _send(send: Send, status: int, body: bytes, content_type: str | None,
                extra: list[tuple[bytes, bytes]], length: int | None = None) -> None:
    headers = list(extra)
    if status != 304:
        headers.append((b"content-length", str(len(body) if length is None else length)
                        .encode()))
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
