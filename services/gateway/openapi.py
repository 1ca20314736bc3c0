"""The OpenAPI 3.1 document, generated from the declared operations and their msgspec types, and a docs page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import msgspec

from services.gateway.errors import CODES
from services.gateway.routing import Operation
from services.gateway.schemas import ErrorBody

REF = "#/components/schemas/{name}"
SECURITY_SCHEMES = {
    "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Api-Key",
                 "description": "The admin key: every operation, as the admin role."},
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API token (stk_...) or a session token (sss_...) from /api/v1/auth/login."},
    "session": {"type": "apiKey", "in": "cookie", "name": "stoker_session",
                "description": "The session cookie set by /api/v1/auth/login."},
}
COMMON_ERRORS = {400: "Malformed request (a request line or header over 8 KB: plain text from the HTTP server)",
                 401: "Authentication required or failed", 403: "Not allowed for this caller", 422: "Validation failed", 429: "Rate limited"}


def _schema_hook(t: type) -> dict[str, Any]:
    if t is object:
        return {"description": "any JSON value"}
    raise NotImplementedError


def _parameters(query: Any, components: dict[str, Any]) -> list[dict[str, Any]]:
    """Query parameters from a query Struct's schema (one parameter per field)."""
    schema = components[query.__name__]
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


def _ref(t: Any) -> dict[str, Any]:
    return {"$ref": REF.format(name=t.__name__)}


def document(operations: Sequence[Operation], *, title: str = "Stoker gateway API", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (schemas are JSON Schema 2020-12, as msgspec writes them)."""
    types = {t for op in operations for t in (op.body, op.query, op.response) if t is not None} | {ErrorBody}
    types |= {t for op in operations for _, t in op.error_bodies}
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=REF, schema_hook=_schema_hook)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {"operationId": op.name, "summary": op.summary, "tags": [op.tag]}
        if op.description:
            item["description"] = op.description
        params = [{"name": n, "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:.]{1,128}$"}} for n in op.path_params]
        if op.query is not None:
            params += _parameters(op.query, components)
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {"required": False, "content": {"application/json": {"schema": _ref(op.body)}}}
        ok: dict[str, Any] = {"description": "Success"}
        if op.response is not None:
            ok["content"] = {op.media_type: {"schema": _ref(op.response)}}
        elif op.media_type != "application/json":  # one or more media types (or ranges), comma-separated
            ok["content"] = {t.strip(): {"schema": {"type": "string", "format": "binary"}}
                             for t in op.media_type.split(",")}
        responses: dict[str, Any] = {str(op.status): ok}
        statuses = set(op.errors) | {429} if op.limit != "none" else set(op.errors)
        if op.role is not None:
            statuses |= {401, 403}
            item["security"] = [{"adminKey": []}, {"bearer": []}, {"session": []}]
        else:
            item["security"] = []
        if op.body is not None or op.query is not None:
            statuses |= {400, 422}
        if op.path_params:
            statuses |= {404}  # a path value that is not a plain id names nothing
        other = dict(op.error_bodies)
        for status in sorted(statuses | set(other)):
            schema = {"anyOf": [_ref(ErrorBody), _ref(other[status])]} if status in other else _ref(ErrorBody)
            content: dict[str, Any] = {"application/json": {"schema": schema}}
            if status == 400:  # the HTTP server itself refuses an oversized request line or header, in plain text
                content["text/plain"] = {"schema": {"type": "string"}}
            responses[str(status)] = {
                "description": COMMON_ERRORS.get(status, CODES.get(status, "Error")), "content": content}
        item["responses"] = responses
        if op.role == "admin":
            item["x-role"] = "admin"
        if op.loopback_only:
            item["x-loopback-only"] = True
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Versioned JSON API of Stoker. Errors: {\"error\": {\"code\", \"message\", \"details\"}}."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


DOCS_CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2rem}.op{margin:.6rem 0;padding:.5rem .8rem;border:1px solid #e3e3e3;
border-radius:6px}.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
code{background:#f4f4f4;padding:0 .25rem;border-radius:3px}.role{color:#8a4b00;font-size:.85em}
details pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.85em}
"""


DOCS_ICON = (  # the UI's icon (web/icon.svg), here too so the docs page has one without the web/ folder
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1b2130"/>'
    '<path d="M16 4c1 5 7 8 7 15a7 7 0 0 1-14 0c0-4 2-6 3.5-8 .3 2.5 1.5 4 3 4.5C14 11 15 7.5 16 4z" fill="#ff8a3d"/>'
    '<path d="M16 16c.6 2.5 3.5 3.5 3.5 6.5a3.5 3.5 0 0 1-7 0c0-2 1.2-3 1.8-4 .4 1 1 1.6 1.7 1.8-.4-1.6-.3-3 0-4.3z" '
    'fill="#ffd166"/></svg>')


def docs_page(doc: dict[str, Any]) -> str:
    """A plain HTML page listing every operation (no script, no CDN: the CSP allows only this origin)."""
    esc = html.escape
    by_tag: dict[str, list[str]] = {}
    for path, methods in doc["paths"].items():
        for method, item in methods.items():
            params = ", ".join(esc(p["name"]) for p in item.get("parameters", []))
            body = item.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = body.get("$ref", "").rsplit("/", 1)[-1]
            role = item.get("x-role") or ("user" if item.get("security") else "public")
            parts = [f'<div class="op" id="{esc(item["operationId"])}"><span class="m">{esc(method.upper())}</span> ',
                     (f"<code>{esc(path)}</code> — {esc(item['summary'])} <span class=\"role\">[{esc(role)}"
                      f"{', loopback only' if item.get('x-loopback-only') else ''}]</span>")]
            if params:
                parts.append(f"<br>parameters: {params}")
            if body_name:
                schema = doc["components"]["schemas"].get(body_name, {})
                parts.append(f"<details><summary>body: {esc(body_name)}</summary><pre>"
                             f"{esc(msgspec.json.format(msgspec.json.encode(schema), indent=2).decode())}</pre></details>")
            parts.append("</div>")
            by_tag.setdefault(item["tags"][0], []).append("".join(parts))
    sections = "".join(f"<h2>{esc(tag)}</h2>{''.join(ops)}" for tag, ops in by_tag.items())
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Stoker API</title>"
            "<link rel=\"icon\" href=\"/api/icon.svg\" type=\"image/svg+xml\">"
            "<link rel=\"stylesheet\" href=\"/api/docs.css\"></head><body>"
            f"<h1>{esc(doc['info']['title'])}</h1><p>{esc(doc['info']['description'])} "
            "Machine-readable: <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>"
            f"{sections}</body></html>")
