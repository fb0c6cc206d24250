"""Portal views (to be written)."""
