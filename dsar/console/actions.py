"""An officer's actions on a request, each behind a confirmation page."""
