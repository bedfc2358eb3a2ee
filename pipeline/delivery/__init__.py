"""Getting each reader their copy exactly once: the campaign loop (``send``), the ledger of every
delivery's state (``ledger``), parallel senders, the message each provider is handed (``messages``),
the providers themselves (``providers``) and what they report back (``events``).

May import ``email``, ``content``, ``store`` and the base modules.
"""
