"""Response hardening, CORS and trusted proxies: what every response carries, whoever answers it.

- `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and `Pragma: no-cache` on every
  response, errors included: bodies hold tokens and user data that no cache should keep.
- CORS is off unless CORS_ORIGINS lists exact origins. An allowed origin gets its own origin
  echoed (never `*`) and preflights are answered here; credentials travel in the X-User-Id and
  X-Auth-Token headers, never cookies, so `Access-Control-Allow-Credentials` is never sent.
- gunicorn's own answers to requests it refuses before the app sees them (400 malformed, 414 request
  line, 431 headers) are JSON with the same headers too (`json_error_page`, gunicorn.conf.py).
- `X-Forwarded-*` is trusted only through TRUSTED_PROXY_HOPS (werkzeug's ProxyFix); with the
  default 0 a client cannot choose the address that login throttling counts.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
# The conditional-request and idempotency headers too (docs/etags-and-idempotency.md).
CORS_HEADERS = "Content-Type, X-User-Id, X-Auth-Token, If-Match, If-None-Match, Idempotency-Key"
CORS_EXPOSED = "Retry-After, ETag, Idempotent-Replayed"
CORS_MAX_AGE = "600"


def parse_origins(raw: str) -> frozenset[str]:
    """CORS_ORIGINS: exact origins separated by commas or spaces (`https://app.example.com`)."""
    origins = frozenset(part.rstrip("/") for part in raw.replace(",", " ").split())
    if "*" in origins or "null" in origins:
        raise ValueError("CORS_ORIGINS takes exact origins such as https://app.example.com, not '*' or 'null'")
    return origins


def init_app(app: Flask) -> None:
    hops = int(app.config["TRUSTED_PROXY_HOPS"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)  # type: ignore[method-assign]
    origins = parse_origins(app.config["CORS_ORIGINS"])

    def answer_preflight() -> Response | None:
        """A browser's CORS preflight from an allowed origin: 204 with what it may send."""
        if (
            request.method == "OPTIONS"
            and request.headers.get("Access-Control-Request-Method")
            and request.headers.get("Origin") in origins
        ):
            response = app.response_class(status=204)
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
            return response
        return None

    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if origins:
            response.vary.add("Origin")
            origin = request.headers.get("Origin")
            if origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        return response

    if origins:
        app.before_request_funcs.setdefault(None, []).insert(0, answer_preflight)  # before authentication
    app.after_request(add_headers)


def json_error_page(sock: Any, status_int: int, reason: str, _mesg: str) -> None:
    """gunicorn's `util.write_error`, answering JSON: `{"success": false, "error": <reason>}` with the
    security headers, e.g. 414 `URI Too Long` or 431 `Request Header Fields Too Large`. gunicorn's
    own message is left out: it echoes parts of the refused request."""
    from gunicorn import util

    body = json.dumps({"success": False, "error": reason}).encode()
    head = [f"HTTP/1.1 {status_int} {reason}", "Connection: close", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items())]
    util.write_nonblock(sock, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def install_json_error_pages() -> None:
    """Make gunicorn's workers answer their own refusals with json_error_page (gunicorn.conf.py)."""
    from gunicorn import util

    util.write_error = json_error_page
