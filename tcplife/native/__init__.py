"""The compiled engine's Python side: what ties ``tcplife._engine`` (engine/*.c) to the core.

Owns: `tcplife.native.cgen` (the engine's tables and constants generated from the Python
core's: engine/tables.h) and `tcplife.native.loader` (loading the engine, refusing one
whose tables differ from the core's, and the choice of core: ``TCPLIFE_CORE``). Imports
the core only, so that every layer that runs the engine (capture, engines) may use it.
"""
