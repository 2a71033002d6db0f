"""Department endpoints (placeholder while being written)."""
from flask import Blueprint

bp = Blueprint("departments", __name__, url_prefix="/api/v1")
