"""The HTTP API's OpenAPI 3.1 contract, generated from the routes (see route.py, document.py, serve.py)."""

from server.openapi.route import IMAGE_FILE, IMAGE_UPLOAD, ApiRoute, Media, api

__all__ = ["IMAGE_FILE", "IMAGE_UPLOAD", "ApiRoute", "Media", "api"]
