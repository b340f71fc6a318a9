"""The ``provenance witness serve`` process: key, state, HTTP server, signals.

Refuses to start without a state database (``provenance witness add-log`` creates it) or with
a key other than the one the state was first served under. Prints one line to stdout when
listening, ``witness <vkey> listening on <host>:<port>``, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ledger.http.server import HttpServer, split_listen
from ledger.witness.http import build_router
from ledger.witness.keyfile import load_key
from ledger.witness.state import WitnessState

__all__ = ["run"]

_log = logging.getLogger(__name__)


def run(key: Path, data: Path, listen: str) -> int:
    """Serve the witness until SIGTERM/SIGINT; returns the exit status (0)."""
    host, _ = split_listen(listen)
    signer = load_key(key)
    vkey = signer.key().text()
    with WitnessState.open(data) as state:
        state.bind_key(vkey)
        logs = state.logs()
        if not logs:
            _log.warning("no logs configured: every add-checkpoint will answer 404 (see 'provenance witness add-log')")
        server = HttpServer(listen, build_router(state, [signer]))
        port = server.start()
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            shown = f"[{host}]" if ":" in host else host
            print(f"witness {vkey} listening on {shown}:{port}", flush=True)
            _log.info("witness serving", extra={"logs": len(logs), "port": port})
            while not stop.wait(3600):
                pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            server.stop()
    print("witness stopped", file=sys.stderr, flush=True)
    return 0
