"""gunicorn settings of the ceiling app: exactly the project's gunicorn.conf.py (bind, workers,
worker class, timeouts, access log, …), minus its `on_starting` hook, which migrates the
database and creates the admin; the ceiling has no database."""

import runpy
from pathlib import Path

_settings = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({k: v for k, v in _settings.items() if not k.startswith("__") and k != "on_starting"})
