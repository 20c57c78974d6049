"""The web dashboard (docs/dashboard.md): ``GET /`` serves one page of plain ES modules
(no build step, no CDN) that uses the project's own REST API and ``/stream/ws``; the
blueprint (``routes.bp``, registered in ``api.app``) also serves its files and a few JSON
helpers under ``/dashboard/``.

- ``routes``: the blueprint; ``assets``: files and the chart library on local disk;
  ``quality``: the completeness heatmap (one query); ``prefect``: gap-fill flow runs;
  ``openapi``: the OpenAPI path items of these routes (no imports, safe from api.openapi).
"""
