"""Extension routes for signed webhooks: `/api/ext/v1/webhooks…` (issue 15; webhooks.py).

Only callers with `manage-livechat-department-webhooks` (admin by default) see or change them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

import db
import webhooks
import workspace_service
from access import require_all
from cache import settings
from openapi import doc
from request_input import request_body, request_query
from schemas import (
    SuccessSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookDeliveriesQuerySchema,
    WebhookDeliveryListSchema,
    WebhookListSchema,
    WebhookResponseSchema,
    WebhookUpdateSchema,
)
from validation import dump, load

bp = Blueprint("webhooks", __name__, url_prefix="/api/ext/v1/webhooks")

MANAGE_WEBHOOKS = "manage-livechat-department-webhooks"


def _allowed_networks() -> Any:
    return webhooks.parse_networks(current_app.config["WEBHOOK_ALLOWED_NETWORKS"])


@bp.post("")
@doc(body=WebhookCreateSchema, response=WebhookCreatedSchema)
def create_webhook() -> Any:
    """Register an endpoint for department events; the signing secret is in this answer only."""
    require_all(MANAGE_WEBHOOKS)
    data = load(WebhookCreateSchema, request_body())
    endpoint = webhooks.create_endpoint(db.session(), data, _allowed_networks())
    return dump(WebhookCreatedSchema, {"webhook": endpoint, "secret": endpoint.secret})


@bp.get("")
@doc(response=WebhookListSchema)
def list_webhooks() -> Any:
    """The registered endpoints (without their secrets)."""
    require_all(MANAGE_WEBHOOKS)
    return dump(WebhookListSchema, {"webhooks": webhooks.endpoints(db.session())})


@bp.put("/<endpoint_id>")
@doc(body=WebhookUpdateSchema, response=WebhookResponseSchema)
def update_webhook(endpoint_id: str) -> Any:
    """Enable an endpoint again (e.g. after it was disabled for failing), or disable it."""
    require_all(MANAGE_WEBHOOKS)
    data = load(WebhookUpdateSchema, request_body())
    return dump(WebhookResponseSchema, {"webhook": webhooks.set_enabled(db.session(), endpoint_id, data["enabled"])})


@bp.delete("/<endpoint_id>")
@doc(response=SuccessSchema)
def delete_webhook(endpoint_id: str) -> Any:
    """Remove an endpoint and its delivery log."""
    require_all(MANAGE_WEBHOOKS)
    webhooks.delete_endpoint(db.session(), endpoint_id)
    return dump(SuccessSchema, {})


@bp.get("/<endpoint_id>/deliveries")
@doc(query=WebhookDeliveriesQuerySchema, response=WebhookDeliveryListSchema)
def list_deliveries(endpoint_id: str) -> Any:
    """An endpoint's delivery log, newest first: each event's status and attempts (status code, time taken)."""
    require_all(MANAGE_WEBHOOKS)
    params = request_query(WebhookDeliveriesQuerySchema)
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    found, total = webhooks.deliveries(db.session(), endpoint_id, offset, limit)
    return dump(WebhookDeliveryListSchema, {"deliveries": found, "count": len(found), "offset": offset, "total": total})


@bp.post("/<endpoint_id>/deliveries/<delivery_id>/redeliver")
@doc(response=SuccessSchema)
def redeliver(endpoint_id: str, delivery_id: str) -> Any:
    """Send a delivery again now, with the same `webhook-id`."""
    require_all(MANAGE_WEBHOOKS)
    webhooks.redeliver(db.session(), endpoint_id, delivery_id)
    return dump(SuccessSchema, {})
