"""Operator entry point: `python scheduler.py` runs the weekly job on VERDICTS_SCHEDULE until stopped."""

from pipeline.cli.main import main

if __name__ == "__main__":
    import sys

    sys.argv = [sys.argv[0], "scheduler"]
    main()
