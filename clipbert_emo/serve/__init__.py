"""A local web page and JSON API around a checkpoint (``clipbert-emo serve``); see app.py."""

from .app import create_app, serve
from .limits import ServeLimits

__all__ = ["ServeLimits", "create_app", "serve"]
