"""Weekly AI Tool Verdicts: comparisons in, one private email per reader out.

The flow runs one way, and so do the imports: ``store`` (the database) under ``content`` (comparisons,
issues, votes) under ``email`` (render, personalise, lint) under ``delivery`` (the campaign loop, the
ledger, providers, their events) under ``ops`` (the scheduler, the weekly job, health and metrics),
with ``web`` and ``cli`` on top. The modules at this level (config with setting_checks and secret_key, errors,
files, logs, heap, resources) are the base every package may use. ``tests/test_layers.py`` checks the order with
import-linter's contracts in ``pyproject.toml``.
"""
