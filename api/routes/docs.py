"""``/openapi.json`` and ``/docs`` (rendered once per worker: the document is static)."""

from __future__ import annotations

from functools import cache

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import html, raw

from api.docs_page import render_docs
from api.openapi import openapi_document
from api.responses import JSON, dumps

bp = Blueprint("docs")


@cache
def _document_bytes() -> bytes:
    return dumps(openapi_document())


@cache
def _docs_html() -> str:
    return render_docs(openapi_document())


@bp.get("/openapi.json")
async def openapi_json(request: Request) -> HTTPResponse:
    return raw(_document_bytes(), content_type=JSON)


@bp.get("/docs")
async def docs(request: Request) -> HTTPResponse:
    return html(_docs_html())
