"""Render the OpenAPI document as one self-contained HTML page (no scripts, no CDN).

Operations grouped by tag, each with its parameters, request body and responses; the
component schemas follow as JSON, linked by anchor.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;
color:#1d2330}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #dde;padding-bottom:.2rem;margin-top:2.5rem}
.op{border:1px solid #dde;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.get{color:#0a6b3b}.post{color:#8a4b00}.put{color:#2d4f9e}.delete{color:#a11}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f5f6fa;padding:.6rem;border-radius:4px;overflow:auto}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #dde;padding:.2rem .5rem;
text-align:left;vertical-align:top}.muted{color:#667}
"""


def _schema_label(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    target = schema.get("$ref")
    if isinstance(target, str):
        name = target.rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    return f"<code>{escape(json.dumps(schema, default=str))}</code>"


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    target = node.get("$ref")
    if not isinstance(target, str):
        return node
    section, name = target.split("/")[-2:]
    resolved: dict[str, Any] = doc["components"][section][name]
    return resolved


def _operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op" id="{escape(method + path)}"><div><span class="m {method}">'
        f"{method.upper()}</span> <code>{escape(path)}</code> — "
        f"{escape(op.get('summary', ''))}</div>"
    ]
    if op.get("description"):
        parts.append(f"<p>{escape(op['description'])}</p>")
    if op.get("security"):
        parts.append('<p class="muted">Needs a bearer token when API_TOKEN is set.</p>')
    params = [_resolve(doc, p) for p in op.get("parameters", [])]
    if params:
        param_rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td>"
            f"<td>{_schema_label(p.get('schema'))}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in params
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th>"
            f"<th>description</th></tr>{param_rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            parts.append(
                f"<p>Body <code>{escape(media)}</code>: {_schema_label(content.get('schema'))}"
                "</p>"
            )
    rows = []
    for status, response in op.get("responses", {}).items():
        response = _resolve(doc, response)
        media = ", ".join(
            f"<code>{escape(m)}</code> {_schema_label(c.get('schema'))}"
            for m, c in response.get("content", {}).items()
        )
        rows.append(
            f"<tr><td>{escape(status)}</td><td>{escape(response.get('description', ''))}</td>"
            f"<td>{media}</td></tr>"
        )
    parts.append(
        "<table><tr><th>status</th><th>meaning</th><th>content</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )
    return "".join(parts)


def render_docs(doc: dict[str, Any]) -> str:
    info = doc["info"]
    sections: list[str] = []
    for tag in doc.get("tags", []):
        ops = [
            _operation(doc, path, method, op)
            for path, item in doc["paths"].items()
            for method, op in item.items()
            if tag["name"] in op.get("tags", [])
        ]
        sections.append(
            f"<h2>{escape(tag['name'])}</h2><p class='muted'>"
            f"{escape(tag.get('description', ''))}</p>{''.join(ops)}"
        )
    schemas = "".join(
        f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>'
        f"<pre>{escape(json.dumps(schema, indent=2, default=str))}</pre>"
        for name, schema in doc["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(info['title'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(info['title'])} <small class='muted'>{escape(info['version'])}</small>"
        f"</h1><p>{escape(info.get('description', ''))}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
        f"{escape(doc['openapi'])}).</p>"
        + "".join(sections)
        + f"<h2>schemas</h2>{schemas}</body></html>"
    )
