"""The FastAPI web app."""
