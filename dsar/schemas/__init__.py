"""marshmallow schemas, by direction and audience: input, officer views,
requester-safe views are separate classes so nothing leaks by accident."""
