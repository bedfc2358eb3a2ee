"""The shipped templates, installed as the package ``pipeline.templates`` (pyproject.toml maps this
folder there), so importlib.resources finds them in a wheel, an sdist and an editable install alike."""
