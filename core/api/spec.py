"""The parts of the OpenAPI document flask-smorest cannot see: each channel type's credentials
(from its adapter's ``credentials_schema``, so a plugin's appear with it), and the routes that
are not admin-API views — the webhook intake, /healthz, /readyz and /metrics."""
from __future__ import annotations

import copy
import re

from werkzeug.routing import Map, Rule

ERROR = {"$ref": "#/components/schemas/Error"}


def document(api, app) -> None:
    channels = app.extensions["orderhooks.channel_types"]
    _credentials_per_type(api.spec, channels)
    _optional_if_match(api.spec)
    _intake(api.spec, channels.types, app.config["MAX_BODY_BYTES"])
    _health(api.spec)


def _path(spec, rule: str, operations: dict) -> None:
    """A path that is no flask-smorest view: its plugin reads the path from a werkzeug rule."""
    spec.path(rule=next(Map([Rule(rule, defaults={})]).iter_rules()), operations=operations)


def _optional_if_match(spec) -> None:
    """If-Match guards an edit when sent; an edit without it is applied as it is."""
    if_match = spec.components.parameters.get("IF_MATCH")
    if if_match is not None:
        if_match["required"] = False
        if_match["description"] = ("The ETag of the version you read (GET): the change is "
                                   "made only if it is still current, else 412. Without it, "
                                   "the change is made as it is (last writer wins).")


def _component_name(channel_type: str, suffix: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", channel_type.title()) + suffix


def _credentials_per_type(spec, channels) -> None:
    """ChannelCreate becomes one variant per installed channel type, told apart by ``type``
    (an OpenAPI discriminator), each with that type's credentials; ChannelPatch's
    ``credentials`` is one of the types' credentials with every field optional (a patch sends
    only what changes)."""
    schemas = spec.components.schemas
    create, patch = schemas.get("ChannelCreate"), schemas.get("ChannelPatch")
    if create is None or patch is None:
        return
    variants, mapping, partial = [], {}, []
    for channel_type in channels.types:
        adapter = channels.get(channel_type)
        name = _component_name(channel_type, "Credentials")
        if adapter.credentials_schema is not None and name not in schemas:
            spec.components.schema(name, schema=adapter.credentials_schema)
        credentials = ({"$ref": f"#/components/schemas/{name}"}
                       if adapter.credentials_schema is not None
                       else {"type": "object", "additionalProperties": True})
        if name in schemas:
            loose = copy.deepcopy(schemas[name])
            loose.pop("required", None)
            loose_name = _component_name(channel_type, "CredentialsPatch")
            if loose_name not in schemas:
                spec.components.schema(loose_name, component=loose)
            partial.append({"$ref": f"#/components/schemas/{loose_name}"})
        variant = copy.deepcopy(create)
        variant["properties"]["type"] = {"type": "string", "enum": [channel_type],
                                         "description": f"{adapter.title} channel"}
        variant["properties"]["credentials"] = {
            **credentials, "description": f"{adapter.title} credentials (write-only)"}
        variant_name = _component_name(channel_type, "ChannelCreate")
        spec.components.schema(variant_name, component=variant)
        variants.append({"$ref": f"#/components/schemas/{variant_name}"})
        mapping[channel_type] = f"#/components/schemas/{variant_name}"
    if not variants:
        return
    schemas["ChannelCreate"] = {
        "oneOf": variants, "discriminator": {"propertyName": "type", "mapping": mapping},
        "description": "A new channel: its `type` (an installed channel type, see GET "
                       "/api/v1/plugins) decides what its credentials are."}
    patch["properties"]["credentials"] = {
        "oneOf" if len(partial) == 1 else "anyOf": partial or [{"type": "object"}],
        "description": "Only the credential fields that change, of the channel's own type "
                       "(write-only)"}


_DELIVERY_ANSWER = {"type": "object", "required": ["status", "delivery_id"], "properties": {
    "status": {"type": "string", "enum": ["accepted", "duplicate"]},
    "delivery_id": {"type": "integer"}}}


def _json(schema, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _intake(spec, channel_types, limit: int) -> None:
    _path(spec, "/webhooks/<channel_type>/<int:channel_id>", {"post": {
        "tags": ["Webhook intake"],
        "summary": "Receive a channel's webhook",
        "description": (
            "Where a sales channel delivers its webhooks (each channel's `webhook_url`). "
            "Authenticated by the channel type's own signature (BigCommerce: the secret "
            "header the service set when subscribing; Shopify: X-Shopify-Hmac-Sha256), not by "
            "the admin token. 200 only once the delivery is durably stored; a duplicate gets "
            "200 and no second row. Any other method gets 405 with `Allow: POST`."),
        "security": [],
        "parameters": [
            {"name": "channel_type", "in": "path", "required": True,
             "schema": {"type": "string", "enum": list(channel_types) or ["none"]}},
            {"name": "channel_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": 999999999999999999}}],
        "requestBody": {"required": True, "description": (
            f"The channel's webhook body, byte for byte (at most {limit} bytes, "
            "ORDERHOOKS_MAX_BODY_BYTES)"),
            "content": {"application/json": {"schema": {}}}},
        "responses": {
            "200": _json(_DELIVERY_ANSWER, "Stored (accepted) or already stored (duplicate)"),
            "400": _json(ERROR, "Authentic but unreadable, or a Content-Length that is not a "
                                "number"),
            "401": _json(ERROR, "Not authentic: the signature is missing or wrong"),
            "404": _json(ERROR, "No such channel of that type, or the channel is inactive or "
                                "deleted (never 410: senders disable endpoints on 410)"),
            "413": _json(ERROR, "The body is larger than ORDERHOOKS_MAX_BODY_BYTES"),
            "503": _json(ERROR, "The database is unavailable: the channel sends it again",
                         {"Retry-After": {"schema": {"type": "integer"},
                                          "description": "Seconds"}}),
        }}})


def _health(spec) -> None:
    status = {"type": "object", "properties": {"status": {"type": "string"},
                                               "database": {"type": "string"}}}
    _path(spec, "/healthz", {"get": {
        "tags": ["Health"], "summary": "Liveness: the process answers", "security": [],
        "responses": {"200": _json(status, "The process is up")}}})
    _path(spec, "/readyz", {"get": {
        "tags": ["Health"], "summary": "Readiness: the database answers", "security": [],
        "responses": {"200": _json(status, "Ready"),
                      "503": _json(status, "The database is unreachable")}}})
    _path(spec, "/metrics", {"get": {
        "tags": ["Health"], "summary": "Prometheus metrics (text exposition format)",
        "security": [],
        "responses": {"200": {"description": "Metrics", "content": {
            "text/plain": {"schema": {"type": "string"}}}}}}})
