"""The Sanic REST API: ``create_app`` in ``api.app``, ``serve`` in ``api.server``."""
