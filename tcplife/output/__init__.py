"""Answers out: the public tables, their formats, the terminal views and the pictures.

Owns the column specs (`schema`), the event -> rows collector (`collect`), plain and
pandas tables (`rows`, `frames`, `framemap`, `snapshot`), filters and times people type
(`filters`, `times`), the file formats (`formats`, `export`), the terminal (`views`,
`fit`, `summary`, `safety`) and the pictures (`plot`, `ladder`). Knows nothing of how
segments become events.
"""
