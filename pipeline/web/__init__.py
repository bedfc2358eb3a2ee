"""The FastAPI web app: sign-up and reader pages, the editors' pages, webhooks, health and metrics.

The top layer with ``cli``: may import any package below it; nothing below imports it. Inside it, ``app`` imports
the routers and the routers never import ``app``: what they share (the page renderer, the CSP of a newsletter shown
as a page) is in ``pages``, and the state they share is made by ``create_app`` on ``app.state``.
"""
