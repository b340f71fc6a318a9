"""The verifiable log (RFC 9162 Merkle tree, C2SP signed checkpoints) over a :class:`~ledger.storage.Storage`.

One module per concern: :mod:`~ledger.log.config` (limits), :mod:`~ledger.log.hook`
(the integration-hook contract), :mod:`~ledger.log.sequencer` (the writing thread),
:mod:`~ledger.log.publisher` (signing and handing out checkpoints),
:mod:`~ledger.log.integrity` (checks at open and after a failed commit),
:mod:`~ledger.log.reads` (entries, proofs, aux reads), :mod:`~ledger.log.tree` (the
proof reader), :mod:`~ledger.log.edge` (the right edge), :mod:`~ledger.log.progress`
(the progress watch) and :mod:`~ledger.log.log` (:class:`Log`, all of them together).
"""

from ledger.log.config import LogConfig
from ledger.log.hook import Appended, AuxView, IntegrationHook, Result
from ledger.log.log import Log
from ledger.log.publisher import CheckpointPublisher

__all__ = ["Appended", "AuxView", "CheckpointPublisher", "IntegrationHook", "Log", "LogConfig", "Result"]
