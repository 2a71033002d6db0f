"""gunicorn settings: `gunicorn -c gunicorn.conf.py app:app` from the project root.

Reads HOST, PORT and WEB_CONCURRENCY (see the README's table). The database is migrated
and the admin created once, in the master, before any worker starts. Logs (LOG_FORMAT,
LOG_LEVEL) and metrics (METRICS) are set up here for gunicorn as for the app: observability.py.
deploy/README.md walks through every setting.
"""

import glob
import os
import shutil
import tempfile

import observability
import security

# Same values as app.config_from_env.
METRICS = os.environ.get("METRICS", "off").lower() in ("1", "on", "true", "yes")

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, not sync workers: a sync worker is held by one slow client for as long as it trickles its
# body (two such sockets stalled the service for `timeout`), while a thread of a gthread worker is
# all it holds. WEB_THREADS threads per worker: with 2 workers, up to 31 slow clients on one of
# them still leave the other requests served at once (docs/security.md, "Slow clients"; the bench
# cost is in docs/performance.md, "Workers").
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 30
graceful_timeout = 30
# Request head limits (README): gunicorn refuses a longer request line with 414 and a larger or
# 101st header with 431, before the application sees the request. 8190 is gunicorn's ceiling
# for the request line (its default is 4094); the body limit is the app's MAX_BODY_BYTES (413).
limit_request_line = int(os.environ.get("MAX_REQUEST_LINE_BYTES") or 8190)
limit_request_fields = int(os.environ.get("MAX_HEADER_FIELDS") or 100)
limit_request_field_size = int(os.environ.get("MAX_HEADER_BYTES") or 8190)
# gunicorn answers what it refuses itself (414, 431, a malformed request) in JSON with the security
# headers, like the app, instead of its HTML page (security.json_error_page).
security.install_json_error_pages()
accesslog = "-"
errorlog = "-"
# gunicorn's own lines and access lines in the app's format (text or JSON, with the request id).
logconfig_dict = observability.logging_config(os.environ.get("LOG_FORMAT", "text"), os.environ.get("LOG_LEVEL", "INFO"))
access_log_format = observability.ACCESS_LOG_FORMAT
# gunicorn 27 opens a control socket at a fixed per-user path by default; two instances
# (tests, several services on one host) would fight over it, and we do not use it.
control_socket_disable = True


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Migrate and create the admin before workers fork (never inside the workers)."""
    if METRICS:
        prepare_metrics_directory()
    from app import create_app
    from cli import prepare_database

    prepare_database(create_app())


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Each worker delivers webhooks from a thread of its own (webhooks.Deliverer): no process
    to start besides gunicorn; claims in the database keep the workers from doubling attempts."""
    import webhooks

    app = worker.wsgi
    if getattr(app, "config", {}).get("WEBHOOKS"):  # not bench/ceiling_app.py, which shares this file
        extensions = app.extensions
        worker.webhook_deliverer = webhooks.Deliverer(
            extensions["db.engine"], app.config, extensions["db.version_reader"]
        ).start()


def worker_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    deliverer = getattr(worker, "webhook_deliverer", None)
    if deliverer is not None:
        deliverer.stop()


def prepare_metrics_directory() -> None:
    """METRICS=on with several workers: each worker writes its figures to files in
    PROMETHEUS_MULTIPROC_DIR and a scrape adds them up. It must be set before prometheus_client
    is first imported (create_app, below) and hold no figures of an earlier run. Not given (or
    inherited from the master a USR2 upgrade replaces): a fresh temporary one, removed at exit."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given or given == os.environ.get("METRICS_TEMP_DIR"):
        made = tempfile.mkdtemp(prefix="departments-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["METRICS_TEMP_DIR"] = made
        return
    os.makedirs(given, exist_ok=True)
    for stale in glob.glob(os.path.join(given, "*.db")):
        os.remove(stale)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A worker is gone: its live gauges no longer count (prometheus_client multi-process mode)."""
    if METRICS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Remove the metrics directory this master made (not one that was given)."""
    made = os.environ.get("METRICS_TEMP_DIR")
    if METRICS and made and made == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)
