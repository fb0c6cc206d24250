"""The queue's filters and search, and a request's page (owned by the queue work)."""
