"""Hash a checkpoint in the background so a training step is not blocked.

Example (a training loop)::

    from client.hashing.background import BackgroundHasher
    from client.hashing import HashConfig

    hasher = BackgroundHasher(HashConfig(threads=1))   # bound the CPU taken from training
    ...
    save_checkpoint(f"ckpt/step-{step}")
    hasher.submit(f"ckpt/step-{step}", lambda m: registry_queue.put((step, m)))
    ...
    hasher.close()   # waits for pending hashes

The callback runs on the hasher's thread, once per submitted folder, with the
:class:`~client.core.manifest.model.Manifest`; a failure goes to ``on_error`` (default:
logged) and to the returned future. Requires that the folder is not modified
while it is hashed (large files are checked: :class:`FileChangedError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from client.core.manifest.model import Manifest
from client.hashing.config import HashConfig
from client.hashing.hashing import hash_path

log = logging.getLogger(__name__)

Callback = Callable[[Manifest], None]
ErrorCallback = Callable[[BaseException], None]


def _log_error(err: BaseException) -> None:
    log.error("background hashing failed: %s", err)


class BackgroundHasher:
    """Hashes folders one after another on one background thread, in submission order."""

    def __init__(self, config: HashConfig | None = None) -> None:
        self.config = config if config is not None else HashConfig()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest-background")

    def submit(self, path: str, callback: Callback, on_error: ErrorCallback = _log_error) -> Future[Manifest]:
        """Queue ``path``; returns at once. ``callback(manifest)`` runs when it is hashed."""

        def job() -> Manifest:
            try:
                manifest = hash_path(path, self.config)
            except BaseException as e:
                on_error(e)
                raise
            callback(manifest)
            return manifest

        return self._executor.submit(job)

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, block until every submitted folder is done."""
        self._executor.shutdown(wait=wait)

    def __enter__(self) -> BackgroundHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hash_in_background(
    path: str, callback: Callback, config: HashConfig | None = None, on_error: ErrorCallback = _log_error
) -> Future[Manifest]:
    """One-shot: hash ``path`` on a fresh background thread and call ``callback(manifest)``."""
    hasher = BackgroundHasher(config)
    try:
        return hasher.submit(path, callback, on_error)
    finally:
        hasher.close(wait=False)
