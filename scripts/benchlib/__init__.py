"""The benchmark behind scripts/bench (entry point: scripts/bench.py), split by concern.

processes (starting, pinning, measuring and ending processes), machine (the machine, the
tools' versions, the commit), origin (the origin server, a small HTTP client, the
correctness guard), peers (the targets: fwdproxy, the peer proxies, the reference
forwarders), measurement (wrk and curl rounds, interleaved, and their medians),
workloads (W1..W8 and the workers sweep), gateway (W8: its origin, page and client),
report (the markdown table, PASS/FAIL lines, the JSON file) and cli (the options, the order
of a run, main).
"""
