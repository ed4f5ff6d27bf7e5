#!/usr/bin/env python3
"""Runs the load generator's `smoke` scenario (tiny sizes of every scenario) against
Fenix, Fenix over TLS (wss://, trusting the run's CA) and the limit server, so the
benchmark tools keep working. The limit server has no presence, so its run skips the
`presence` scenario; the TLS run has no flood and no churn (they write on plain TCP). No
timing is asserted: it fails only if a message is lost, duplicated or out of order,
or a phase fails."""

import sys

from run import Server, free_port, loadgen

runs = [("fenix", False), ("fenix", True), ("limit", False)]
failed = 0
for name, tls in runs:
    server = Server(name, free_port(), tls=tls)
    try:
        result = loadgen(["smoke"] + server.target() + (["--no-presence"] if name == "limit" else []))
    finally:
        server.stop()
    ok = "error" not in result and result.get("ok", False)
    failed += not ok
    parts = ", ".join(f"{r.get('scenario')} {'ok' if r.get('ok') else 'FAILED'}" for r in result.get("results", []))
    print(f"bench smoke {name}{' tls' if tls else ''}: {'ok' if ok else 'FAILED'} ({parts or result})")
print(f"{len(runs) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
