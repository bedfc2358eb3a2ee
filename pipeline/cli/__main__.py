"""``python -m pipeline.cli``: the same as the ``verdicts`` command."""

from pipeline.cli.main import main

main()
