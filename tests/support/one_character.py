"""A pytest plugin for tests/test_snapshot_guard.py: loaded with ``-p``, it
changes one character of three texts dsar renders (the code mail's greeting, the
denial notice's "Why:", the API's 404 message), so the golden tests that pin them
must fail."""

from dsar import texts

CHANGED = {"mail.code.body": ("Hello,", "Hello;"), "api.not_found": ("this id", "thus id"),
           "mail.denied.body": ("Why:", "Why;")}

for key, (old, new) in CHANGED.items():
    assert old in texts.DEFAULTS[key], key
    texts.DEFAULTS[key] = texts.DEFAULTS[key].replace(old, new, 1)
