"""The FastAPI web app: sign-up and reader pages, the editors' pages, webhooks, health and metrics.

The top layer with ``cli``: may import any package below it; nothing below imports it.
"""
