"""The API docs page, `GET /api/docs`: Swagger UI showing this service's own OpenAPI document.

Every file comes from this service: Swagger UI's dist files ship in the flask-swagger-ui wheel
(pinned in requirements.txt) and are served from our own route, not through that package's
blueprint, whose template writes absolute asset URLs that break under a path prefix
(docs/architecture.md). Every URL the page uses is relative to the page
(`docs/…` for the assets, `openapi.json` for the document), so it works wherever the service is
mounted: under gunicorn's SCRIPT_NAME or a proxy's X-Forwarded-Prefix alike.
No login is needed to read the docs; "Authorize" takes the X-User-Id and X-Auth-Token that
`POST /api/v1/login` returns, and "Try it out" then calls the API from the page.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

from access import public
from openapi import doc

bp = Blueprint("apidocs", __name__)

SWAGGER_UI_DIST = str(files("flask_swagger_ui") / "dist")
SWAGGER_UI_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"})

# No inline script or style, so the page works under a strict Content-Security-Policy.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Livechat departments API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui" data-spec-url="openapi.json"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-initializer.js"></script>
</body>
</html>
"""

INITIALIZER = """"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    // relative to the page, so that a path prefix is kept
    url: new URL(root.dataset.specUrl, document.baseURI).href,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,  // never send the document to an online validator
    queryConfigEnabled: false,  // ignore ?url=… and ?configUrl=… in the page address
  });
});
"""

# Only this service's own origin: the page loads nothing from anywhere else. Swagger UI sets
# style attributes and uses data: images, hence those two exceptions.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


@bp.get("/api/docs")
@public
@doc(public=True, errors=(), media_type="text/html")
def page() -> Response:
    """The API docs page (Swagger UI)."""
    return Response(PAGE, mimetype="text/html", headers={"Content-Security-Policy": CSP})


@bp.get("/api/docs/<path:filename>")
@public
@doc(hidden=True)  # the page's own files, not part of the API
def asset(filename: str) -> Response:
    """A file of the docs page."""
    if filename == "swagger-initializer.js":
        return Response(INITIALIZER, mimetype="text/javascript")
    if filename not in SWAGGER_UI_FILES:
        raise NotFound()
    return send_from_directory(SWAGGER_UI_DIST, filename)
