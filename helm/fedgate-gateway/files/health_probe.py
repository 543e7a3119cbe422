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


def check(port: int, service: str, tls_dir: str = TLS, timeout: float = 3.0) -> tuple[bool, str]:
    """Ask 127.0.0.1:`port` whether `service` ("" for the whole server) is SERVING; returns (serving, what)."""
    with open(f"{tls_dir}/ca.pem", "rb") as ca, open(f"{tls_dir}/cert.pem", "rb") as cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        name = server_name(cert.read())
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return False, f"{service or 'server'}: {exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return answer.status == health_pb2.HealthCheckResponse.SERVING, f"{service or 'server'}: {status}"


def main() -> int:
    parser = argparse.ArgumentParser(description="gRPC health over TLS on the gateway's port; exit 0 if SERVING")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    serving, what = check(args.port, args.service, TLS, args.timeout)
    print(what, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
