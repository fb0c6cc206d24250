"""``maildir``: a person's mail in a Maildir (with Maildir++ subfolders).

Configuration::

    type = "maildir"
    path = "/srv/mail/support/Maildir"
    others = "redact"     # redact (default) | remove | keep

A message belongs to the subject when one of the subject's addresses appears
in From, To, Cc, Reply-To or another address header. Addresses are compared
lower-cased and NFC-normalised, with IDNA (``xn--``) domains in Unicode form;
raw UTF-8 headers (RFC 6532, SMTPUTF8 mail) are decoded. Messages the subject
sent (From) are deleted; in messages other people sent the subject's address
is replaced by ``redacted@invalid`` (``redact``), dropped (``remove``), or the
message is kept under the hold ``others-mail`` (``keep``). With ``redact`` and
``remove`` the address is also replaced by ``redacted@invalid`` wherever it
appears in the text/plain and text/html body parts (quoted replies,
signatures): text cannot be dropped from prose. Attachments are left alone.

Rewriting a message adds the new version and then removes the old one, so a
crash in between never loses mail; the new version gets a new key (IMAP
servers such as Dovecot cache sizes by file name) derived from the old one,
so a rerun recognises the copy it added, removes the old version and ends
with one copy. New versions are written to ``tmp/.dsar-tmp-*`` first; a
crash's leftovers there are removed by the next find or erase (see
:mod:`.store`). Flags, the ``new``/``cur`` subdirectory, the MIME structure
and every header and part that does not name the subject are kept as they
were. Find, plan and erase stop between messages when the engine asks.
"""

from .addresses import address_hash, redact_text
from .connector import MaildirConfigSchema, MaildirConnector

__all__ = ["MaildirConfigSchema", "MaildirConnector", "address_hash", "redact_text"]
