"""The server version: what `GET /api/info` reports and the OpenAPI document's `info.version`."""

VERSION = "1.0.0"
