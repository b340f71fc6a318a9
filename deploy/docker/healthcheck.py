"""Container health probe: exit 0 when the ledger's gRPC health service reports SERVING, else 1.

Used by the Dockerfile's HEALTHCHECK (no grpc_health_probe binary needed: the image already
has grpcio). Usage: ``python healthcheck.py [HOST:PORT] [SERVICE]``; the defaults probe the
whole server on 127.0.0.1:50051. Kubernetes does not need it (its probes speak gRPC health).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
TIMEOUT_SECONDS = 2.5  # under the HEALTHCHECK --timeout


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else DEFAULT_ADDRESS
    service = argv[2] if len(argv) > 2 else ""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as err:
            print(f"unhealthy: {address} {err.code().name}", file=sys.stderr)
            return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {address} reports {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
