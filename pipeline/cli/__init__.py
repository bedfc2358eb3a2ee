"""The ``verdicts`` command (``main``) and its groups: what operators and editors type.

The top layer with ``web``: may import any package, and nothing imports it but ``subscribers.cli``.
"""
