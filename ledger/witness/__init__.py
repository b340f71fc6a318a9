"""A C2SP tlog-witness (https://c2sp.org/tlog-witness) for any C2SP log: ``provenance witness serve``.

- ``core.py``: the add-checkpoint decision, pure (request parsing, status codes, new state, evidence);
- ``state.py``: the durable state in SQLite (configured logs, latest cosigned checkpoint per origin,
  evidence of refused conflicting checkpoints);
- ``http.py``: the routes on :mod:`ledger.http`'s router (``POST /add-checkpoint``, monitoring GET);
- ``keyfile.py``: the witness's private key file;
- ``process.py``: the process (key, state, HTTP server, signals).

It never imports the log, the registry, the gRPC edge or ``ledger.app``: a witness shares
nothing with the log it watches. docs/witness.md describes flags, state and codes.
"""
