"""Web pages of the shared classroom: teacher console and classroom TV view.

Static HTML, vanilla JS and CSS with no build step and no asset from any outside
network. :func:`classroom_web.routes.add_routes` mounts them on an aiohttp app.
"""

from .routes import add_routes

__all__ = ["add_routes"]
