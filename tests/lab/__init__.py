"""Kernel lab: real sockets in network namespaces produce captures plus `ss` ground truth.

Owns nothing by itself; see `netlab` (namespaces, drops, captures, ss), `agent` (socket
process), `scenarios` (the scenarios and their runner), `anomalies` (the anomaly ground
truth of each scenario, checked in its captures) and `regenerate` (command line).
"""
