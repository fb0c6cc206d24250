"""Connectors that ship with dsar, one module each.

Each is registered in setup.cfg under the ``dsar.connectors`` entry-point group,
exactly as a third-party package would register its own: ``sql``
(:class:`connectors.sql.SqlTableConnector`), ``maildir``
(:class:`connectors.maildir.MaildirConnector`) and ``slack_export``
(:class:`connectors.slack_export.SlackExportConnector`).
"""
