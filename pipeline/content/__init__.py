"""What the newsletter says: comparisons imported from the site, the weekly issue built from them,
the editors' changes to it, and the community's votes.

May import ``store`` and the base modules; knows nothing of how an issue becomes email.
"""
