"""gunicorn settings: `gunicorn -c gunicorn.conf.py app:app` from the project root.

Reads HOST, PORT and WEB_CONCURRENCY (see the README's table). The database is migrated
and the admin created once, in the master, before any worker starts.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 30
# Request head limits (README): gunicorn refuses a longer request line with 414 and a larger or
# 101st header with 431, before the application sees the request. 8190 is gunicorn's ceiling
# for the request line (its default is 4094); the body limit is the app's MAX_BODY_BYTES (413).
limit_request_line = int(os.environ.get("MAX_REQUEST_LINE_BYTES") or 8190)
limit_request_fields = int(os.environ.get("MAX_HEADER_FIELDS") or 100)
limit_request_field_size = int(os.environ.get("MAX_HEADER_BYTES") or 8190)
accesslog = "-"
errorlog = "-"
# gunicorn 27 opens a control socket at a fixed per-user path by default; two instances
# (tests, several services on one host) would fight over it, and we do not use it.
control_socket_disable = True


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Migrate and create the admin before workers fork (never inside the workers)."""
    from app import create_app
    from cli import prepare_database

    prepare_database(create_app())
