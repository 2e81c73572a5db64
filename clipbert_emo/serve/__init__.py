"""A local web page and JSON API around a checkpoint (``clipbert-emo serve``); see app.py."""

from .app import ServeLimits, create_app, serve

__all__ = ["ServeLimits", "create_app", "serve"]
