"""Server reflection behind our own request parsing.

Registered as grpcio-reflection ships it (``enable_server_reflection``), a request that does not
decode fails inside the library's deserializer: the caller gets UNKNOWN with the Python exception
class in the message, and grpcio logs a traceback for every such request (a cheap way to flood the
server's log). :func:`reflection_handler` decodes each request of the stream itself
(``ledger/grpc/handlers.py``'s :func:`~ledger.grpc.handlers.parse`), so a garbled one ends the stream
with INVALID_ARGUMENT and a message, logged at most as one line; well-formed requests get the
library's servicer's own answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from ledger.grpc.handlers import abort, parse

SERVICE_NAME: str = reflection.SERVICE_NAME
_PATH = f"/{SERVICE_NAME}/ServerReflectionInfo"


def reflection_handler(names: Sequence[str]) -> grpc.GenericRpcHandler:
    """The reflection service for ``names`` (full service names; its own name is added).

    Not rate limited and not timed, like health: it answers only from the server's descriptors.
    """
    servicer = ReflectionServicer((*names, SERVICE_NAME))

    async def requests(raws: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in raws:
            yield parse(reflection_pb2.ServerReflectionRequest, raw)

    async def info(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        try:
            async for response in servicer.ServerReflectionInfo(requests(raws), context):
                yield response.SerializeToString()
        except Exception as err:  # a ProvenanceError maps to its status; anything else is INTERNAL, logged
            await abort(context, err, _PATH)

    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(info),
    })
