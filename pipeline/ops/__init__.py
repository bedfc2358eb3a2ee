"""Running the pipeline unattended: the scheduler and the weekly job, its heartbeat, metrics, and the
checks of a deployment's configuration and sending domain.

May import ``delivery`` and everything under it; the web app and the CLI show what this keeps.
"""
