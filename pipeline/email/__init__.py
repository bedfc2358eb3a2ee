"""An issue as email: MJML and text rendered once (``render``), cut at each reader's slots
(``personal``), checked before it may be approved or sent (``lint``, ``approval``).

May import ``content``, ``store`` and the base modules; never delivery, which sends what this makes.
"""
