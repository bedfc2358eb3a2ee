"""Weekly AI Tool Verdicts: content → issue → render → send → provider."""
