"""Advance reservations: booking cards ahead, the rounds with the sites, what placement keeps."""
