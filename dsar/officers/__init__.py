"""Compliance officers: accounts with two factors, console sessions, sign-in.

* :mod:`.factors`: the password (argon2), TOTP codes (each good once) and
  single-use recovery codes.
* :mod:`.accounts`: create (a one-time set-up link), set up, change a role,
  disable; each an audit event naming the officer by id.
* :mod:`.signin`: sign-in with both factors, throttled per account and per
  address before anything is written.
* :mod:`.sessions`: server-side console sessions (idle and absolute expiry).
"""
