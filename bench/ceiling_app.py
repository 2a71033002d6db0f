"""The reference ceiling: a bare Flask app that answers precomputed bodies.

No database, no authentication, no validation: each request is looked up by method and raw
request target (`GET /api/v1/livechat/department?count=50`) in a table that bench/run.py
captured from the real service beforehand, and the stored status, Content-Type and body bytes
are sent back as they are. The service can get no faster than this under the same gunicorn
settings, so `service req/s / ceiling req/s` is the share of the reachable throughput the
service achieves.

Run by bench/run.py as `gunicorn -c bench/gunicorn_ceiling.conf.py bench.ceiling_app:app` with
CEILING_BODIES=<json file>: {"METHOD /path?query": [status, content_type, base64 body], ...}.
A request that is not in the table gets 404 (run.py counts it as a non-2xx).
"""

from __future__ import annotations

import base64
import json
import os

from flask import Flask, Response, request


def load_bodies(path: str) -> dict[str, tuple[int, str, bytes]]:
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    return {key: (status, ctype, base64.b64decode(body)) for key, (status, ctype, body) in raw.items()}


def create_app(bodies: dict[str, tuple[int, str, bytes]]) -> Flask:
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    def answer(path: str) -> Response:
        target = request.environ.get("RAW_URI")
        if not target:  # not under gunicorn (tests with app.test_client())
            query = request.environ.get("QUERY_STRING", "")
            target = request.path + ("?" + query if query else "")
        found = bodies.get(f"{request.method} {target}")
        if found is None:
            return Response(b'{"success":false,"error":"not in the ceiling table"}', 404, content_type="application/json")
        status, content_type, body = found
        return Response(body, status, content_type=content_type)

    return app


def __getattr__(name: str) -> Flask:
    if name == "app":
        wsgi_app = create_app(load_bodies(os.environ["CEILING_BODIES"]))
        globals()["app"] = wsgi_app
        return wsgi_app
    raise AttributeError(name)
