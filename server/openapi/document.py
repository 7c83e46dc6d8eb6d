"""Build the OpenAPI 3.1 document from the app's routes (never written by hand).

Every `Route` must be an `ApiRoute` (server/openapi/route.py) or say `include_in_schema=False` (the
PWA's pages); websocket routes and mounts are not HTTP operations and are left out. Request
schemas come from the pydantic models the handlers validate with (`model_json_schema`, hoisted
into `components/schemas`), the auth requirement from `@requires`, and each operation lists every
error it may answer in the one error shape, its `code` an enum per status.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from starlette.convertors import FloatConvertor, IntegerConvertor, PathConvertor, UUIDConvertor
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from server import __version__
from server.errors import AppError
from server.openapi.introspect import HandlerFacts, facts_of
from server.openapi.route import MAX_ID_DIGITS, ApiRoute, ApiSpec, Auth, Media

OPENAPI_VERSION = "3.1.0"
ERROR_REF = "#/components/schemas/Error"
RATE_LIMIT_EXEMPT = frozenset({"/api/health", "/api/ready", "/metrics"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PATH_ID = 10**MAX_ID_DIGITS - 1

# Errors any route of a kind may answer, whatever its handler does.
BODY_ERRORS = ((400, "invalid_json"), (400, "empty_body"), (413, "payload_too_large"),
               (415, "unsupported_media_type"), (422, "validation_failed"))
USER_AUTH_ERRORS = ((401, "unauthorized"), (401, "invalid_token"))
CSRF_ERROR = (403, "csrf_failed")
PERMISSION_ERROR = (403, "forbidden")
RATE_LIMIT_ERROR = (429, "rate_limited")

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A member's access token (`POST /api/auth/login`), or a bot token `vxb_…`."},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "vonix_access",
                   "description": "The browser session cookie. State-changing requests must also send the "
                                  "`vonix_csrf` cookie's value in the `X-CSRF-Token` header (else 403 "
                                  "`csrf_failed`)."},
    "serverKey": {"type": "http", "scheme": "bearer", "bearerFormat": "vxs_…",
                  "description": "A game server's plugin API key (`vxs_…`), issued by an admin."},
}
USER_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "none": [],
    "optional": [{}, *USER_SECURITY],
    "member": USER_SECURITY,
    "admin": USER_SECURITY,
    "bot": [{"bearerAuth": []}],
    "server": [{"serverKey": []}],
}
AUTH_TEXT: dict[Auth, str] = {
    "none": "No authentication.",
    "optional": "Anonymous, or signed in (a member sees more).",
    "member": "A signed-in member (or a bot token with the needed scope).",
    "admin": "A signed-in admin (bot tokens are refused).",
    "bot": "A bot token (`vxb_…`).",
    "server": "A game server's API key (`vxs_…`).",
}

ERROR_SCHEMAS: dict[str, Any] = {
    "ErrorBody": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "Stable machine-readable code; switch on this."},
            "message": {"type": "string", "description": "A human-readable sentence (may change)."},
            "request_id": {"type": ["string", "null"], "description": "Quote it when reporting a problem."},
            "details": {"description": "Per-field errors for `validation_failed`, else code-specific.",
                        "oneOf": [{"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                                  {"type": "object"}]},
        },
    },
    "FieldError": {
        "type": "object",
        "required": ["field", "code", "message"],
        "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}},
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
        "description": "The one error shape every route answers with.",
    },
}
OBJECT = {"type": "object"}
OPEN = "*"  # marks a status whose code the handler computes at run time (no enum)


def known_codes() -> dict[str, int]:
    """Every `AppError` subclass's default code and status (`forbidden` -> 403, ...)."""
    codes: dict[str, int] = {}
    pending: list[type[AppError]] = [AppError]
    while pending:
        cls = pending.pop()
        codes.setdefault(cls.code, cls.status)
        pending.extend(cls.__subclasses__())
    codes.update({"method_not_allowed": 405, "empty_body": 400})
    return codes


class Components:
    """`components/schemas`, filled as models are met; names are unique or the build fails."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = dict(ERROR_SCHEMAS)
        self._owners: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
        # A response model gets `Out` (it may differ from the same model read as input), unless its
        # name already says so (`ServerOut`).
        base = model.__name__ if mode == "validation" or model.__name__.endswith("Out") else f"{model.__name__}Out"
        owner = (model.__module__, model.__qualname__, mode)
        prefix = ""
        if self._owners.get(base, owner) != owner:
            prefix = model.__module__.rsplit(".", 1)[-1] + "."
        name = prefix + base
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=f"#/components/schemas/{prefix}{{model}}",
                                             mode=mode)  # type: ignore[arg-type]
            for def_name, definition in schema.pop("$defs", {}).items():
                # A nested model met twice must be the same schema: two models sharing a name
                # (a request `Rank` and a response `Rank`) would otherwise silently share one.
                if self.schemas.setdefault(f"{prefix}{def_name}", definition) != definition:
                    raise ValueError(f"two different schemas named {prefix}{def_name} ({model.__module__})")
            self.schemas[name] = schema
            self._owners[name] = owner
        return {"$ref": f"#/components/schemas/{name}"}


def _path_template(route: Route) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for name, convertor in route.param_convertors.items():
        if isinstance(convertor, IntegerConvertor):
            schema: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_PATH_ID}
        elif isinstance(convertor, FloatConvertor):
            schema = {"type": "number", "minimum": 0}
        elif isinstance(convertor, UUIDConvertor):
            schema = {"type": "string", "format": "uuid"}
        elif isinstance(convertor, PathConvertor):
            schema = {"type": "string"}
        else:
            schema = {"type": "string", "pattern": "^[^/]+$", "minLength": 1}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return re.sub(r"{([A-Za-z_][A-Za-z0-9_]*)(:[a-z]+)?}", r"{\1}", route.path), parameters


def _auth(spec: ApiSpec, facts: HandlerFacts) -> Auth:
    if spec.auth is not None:
        return spec.auth
    if facts.permission is None:
        return "none"
    return "admin" if facts.permission.startswith("admin.") else "member"


def _error_codes(route: ApiRoute, method: str, auth: Auth, facts: HandlerFacts, has_body: bool,
                 codes: Mapping[str, int]) -> dict[int, set[str]]:
    found: set[tuple[int, str]] = set(facts.errors)
    if has_body:
        found.update(BODY_ERRORS)
    if facts.query or route.spec.query is not None:
        found.add((422, "validation_failed"))
    if route.param_convertors:
        found.add((404, "not_found"))
    if auth in ("member", "admin", "bot"):
        found.update(USER_AUTH_ERRORS)
        if method not in SAFE_METHODS:
            found.add(CSRF_ERROR)
    if auth == "optional":
        found.add((401, "invalid_token"))
    if auth == "server":
        found.update(USER_AUTH_ERRORS)
    if auth == "admin" or (facts.permission not in (None, "authenticated")):
        found.add(PERMISSION_ERROR)
    if route.path.startswith("/api/") and route.path not in RATE_LIMIT_EXEMPT:
        found.add(RATE_LIMIT_ERROR)
    for error in route.spec.errors:
        if isinstance(error, str):
            if error not in codes:
                raise ValueError(f"{route.path}: unknown error code {error!r}; give (status, code)")
            found.add((codes[error], error))
        else:
            found.add(error)
    by_status: dict[int, set[str]] = defaultdict(set)
    for status, code in found:
        by_status[status].add(code)
    for status in facts.open_statuses:
        by_status[status].add(OPEN)
    return dict(by_status)


def _error_response(status: int, codes: set[str]) -> dict[str, Any]:
    """The error shape; `code` is an enum of the codes this operation may answer with this status."""
    ordered = sorted(codes - {OPEN})
    schema: dict[str, Any] = {"$ref": ERROR_REF}
    if OPEN not in codes:
        schema = {"allOf": [{"$ref": ERROR_REF}],
                  "properties": {"error": {"properties": {"code": {"enum": ordered}}}}}
    listed = ", ".join(f"`{code}`" for code in ordered) or "a code"
    response: dict[str, Any] = {
        "description": f"Error: {listed}" + (" (or another code computed at run time)" if OPEN in codes else ""),
        "content": {"application/json": {"schema": schema}},
    }
    if ordered:
        response["content"]["application/json"]["example"] = {
            "error": {"code": ordered[0], "message": "…", "request_id": "f3c9a1d2e4b5"}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                               "description": "Seconds to wait before retrying."}}
    return response


def _success_response(status: int, value: Any, components: Components) -> dict[str, Any]:
    if status == 204 or (value is None and status != 200):
        return {"description": "No content."}
    if isinstance(value, Media):
        response: dict[str, Any] = {"description": value.description or "OK."}
        if value.media_type is not None:
            response["content"] = {value.media_type: {"schema": value.schema}}
        if value.headers:
            response["headers"] = {name: {"schema": {"type": "string"}, "description": text}
                                   for name, text in value.headers.items()}
        return response
    if isinstance(value, type) and issubclass(value, BaseModel):
        schema = components.ref(value, mode="serialization")
    elif isinstance(value, dict):
        schema = value
    else:
        schema = OBJECT
    description = "Created." if status == 201 else "Accepted." if status == 202 else "OK."
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _summary(spec: ApiSpec, facts: HandlerFacts, endpoint_name: str) -> str:
    if spec.summary:
        return spec.summary
    if facts.docstring:
        return facts.docstring.strip().splitlines()[0].rstrip(".")[:120]
    return endpoint_name.replace("_", " ").strip().capitalize()


def _operation(route: ApiRoute, method: str, components: Components, codes: Mapping[str, int],
               operation_ids: set[str]) -> dict[str, Any]:
    spec = route.spec
    facts = facts_of(route.endpoint)
    auth = _auth(spec, facts)
    path, parameters = _path_template(route)
    module = route.endpoint.__module__.rsplit(".", 1)[-1]
    name = getattr(route.endpoint, "__name__", "handler")
    operation_id = f"{module}.{name}" + (f".{method.lower()}" if len(_methods(route)) > 1 else "")
    if operation_id in operation_ids:
        raise ValueError(f"duplicate operationId {operation_id} ({route.path})")
    operation_ids.add(operation_id)

    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": list(spec.tags or (module,)),
        "summary": _summary(spec, facts, name),
        "security": SECURITY[auth],
        "x-vonix-auth": auth,
    }
    description = [spec.description or "", f"**Auth:** {AUTH_TEXT[auth]}"]
    if facts.permission not in (None, "authenticated"):
        operation["x-vonix-permission"] = facts.permission
        description.append(f"Needs the `{facts.permission}` permission.")
    operation["description"] = "\n\n".join(part for part in description if part)

    query = dict(facts.query)
    for param in parameters:
        query.pop(param["name"], None)
    params = list(parameters)
    if spec.query is not None:
        schema = spec.query.model_json_schema()
        required = set(schema.get("required", ()))
        for field_name, field_schema in schema.get("properties", {}).items():
            params.append({"name": field_name, "in": "query", "required": field_name in required,
                           "schema": field_schema})
            query.pop(field_name, None)
    params.extend({"name": q.name, "in": "query", "required": False, "schema": q.schema} for q in query.values())
    if params:
        operation["parameters"] = params

    body_model = spec.body or facts.body
    has_body = body_model is not None or spec.body_media is not None
    if spec.body_media is not None:
        operation["requestBody"] = {"required": True, "content": {
            spec.body_media.media_type or "application/octet-stream": {"schema": spec.body_media.schema}}}
    elif body_model is not None:
        content: dict[str, Any] = {"schema": components.ref(body_model)}
        if spec.examples:
            content["examples"] = {key: {"value": value} for key, value in spec.examples.items()}
        operation["requestBody"] = {"required": spec.body_required, "content": {"application/json": content}}

    responses: dict[str, Any] = {}
    statuses = set(facts.statuses)
    if not statuses or 304 in statuses:  # a conditional GET answers 200 too
        statuses.add(200)
    ok = spec.ok if spec.ok is not None else dict.fromkeys(sorted(statuses))
    for status, value in sorted(ok.items()):
        responses[str(status)] = _success_response(status, value, components)
    for status, error_codes in sorted(_error_codes(route, method, auth, facts, has_body, codes).items()):
        responses[str(status)] = _error_response(status, error_codes)
    operation["responses"] = responses
    if spec.deprecated:
        operation["deprecated"] = True
    operation["x-path"] = path
    return operation


def _methods(route: Route) -> list[str]:
    return sorted(m for m in (route.methods or {"GET"}) if m != "HEAD") or ["GET"]


def undescribed(routes: Iterable[BaseRoute]) -> list[str]:
    """Routes that are neither described nor explicitly left out: the contract test wants none."""
    missing = []
    for route in routes:
        if isinstance(route, WebSocketRoute | Mount) or isinstance(route, ApiRoute):
            continue
        if isinstance(route, Route) and not route.include_in_schema:
            continue
        missing.append(getattr(route, "path", repr(route)))
    return missing


def build_document(routes: Iterable[BaseRoute], *, title: str = "Vonix HTTP API") -> dict[str, Any]:
    routes = list(routes)
    missing = undescribed(routes)
    if missing:
        raise ValueError(f"routes without api(...) metadata: {missing}")
    components = Components()
    codes = known_codes()
    operation_ids: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        for method in _methods(route):
            operation = _operation(route, method, components, codes, operation_ids)
            path = operation.pop("x-path")
            item = paths.setdefault(path, {})
            if method.lower() in item:
                raise ValueError(f"{method} {path} is described twice")
            item[method.lower()] = operation
            parameters = [p for p in operation.get("parameters", ()) if p["in"] == "path"]
            if parameters:
                item.setdefault("parameters", parameters)
                operation["parameters"] = [p for p in operation["parameters"] if p["in"] != "path"]
                if not operation["parameters"]:
                    del operation["parameters"]
    tags = sorted({tag for item in paths.values() for op in item.values() if isinstance(op, dict)
                   for tag in op.get("tags", ())})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": __version__,
            "description": (
                "Generated from the server's routes and request models (server/openapi/). Every error "
                "answers `{\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}`; each "
                "operation lists the codes it may answer. The websocket protocol is described "
                "separately (AsyncAPI)."),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": components.schemas, "securitySchemes": SECURITY_SCHEMES},
    }
