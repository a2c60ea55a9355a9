"""The sans-IO core: decoded segments in, lifecycle events out.

Owns the vocabulary (`states`), the state machine as tables (`machine`: per-side and
joint), sequence arithmetic (`seq`), the options a capture cannot show (`options`), the
segment record (`segment`), one side's and one instance's bookkeeping (`endpoint`,
`connection`), the rules of evidence (`evidence`), the one place states change
(`changes`), the per-segment rules (`rules`), the verdict (`verdict`), timers (`timers`),
the flow table (`flows`), the observer hook (`observe`), the events (`events`), the fast
path's view (`steady`) and the tracker that calls them (`tracker`). Imports nothing outside
the standard library and nothing of tcplife outside this package (tests/test_layers.py):
files, sockets, pandas and the terminal are other layers' business. docs/architecture.md
says where each piece sits.
"""
