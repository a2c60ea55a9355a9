"""The engines: what drives the core over a whole input and hands its events on.

Owns the file engine (`analysis`: captures -> `Result`), the live engine (`live`: an
interface, as it happens), the Dask engine (`distributed`, `dataset`, `spool`: rotated
captures on a cluster), the fast path's driver (`drive`), progress counting (`progress`)
and the re-reading of captures for chosen connections (`packets`).
"""
