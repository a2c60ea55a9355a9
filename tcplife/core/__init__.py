"""The sans-IO core: decoded segments in, lifecycle events out.

Owns the vocabulary (`states`), the state machine as tables (`machine`), sequence
arithmetic (`seq`), the options a capture cannot show (`options`), the segment record
(`segment`), one side's bookkeeping (`endpoint`), the events (`events`) and the tracker
(`tracker`). Imports nothing outside the standard library and nothing of tcplife outside
this package: files, sockets, pandas and the terminal are other layers' business.
"""
