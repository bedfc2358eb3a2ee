"""People and their consent: who may receive the newsletter, and how they leave."""
