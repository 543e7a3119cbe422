"""The gateway pod's readiness check: gRPC health over TLS on the gateway's own public port.

Owns: one `grpc.health.v1.Health/Check` from inside the pod, exit 0 when the service is SERVING and 1 otherwise
(NOT_SERVING, an error such as a standby's NOT_LEADER, no answer in time). Kubelet's `grpc:` probe speaks
plaintext only and every fedgate port is TLS, so the chart asks the same question here. It trusts the federation
CA the gateway itself uses and names the gateway by its own certificate's first DNS (else IP) name, so it works
whatever host names the certificate carries. It needs no client certificate: the public port answers health to
anyone. Runs with the image's Python (grpcio, grpcio-health-checking, cryptography are fedgate's dependencies).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

TLS = "/etc/fedgate/tls"


def server_name(certificate_pem: bytes) -> str:
    """The first DNS name of the certificate's SANs, else its first IP address."""
    names = x509.load_pem_x509_certificate(certificate_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    dns = names.value.get_values_for_type(x509.DNSName)
    return dns[0] if dns else str(names.value.get_values_for_type(x509.IPAddress)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    with open(f"{TLS}/ca.pem", "rb") as ca, open(f"{TLS}/cert.pem", "rb") as cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        name = server_name(cert.read())
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(f"127.0.0.1:{args.port}", credentials, options=options) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{args.service or 'server'}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.service or 'server'}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
