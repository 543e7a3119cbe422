"""What the security tests share: a snapshot of what the store holds, raw channels for saying what the client
library never would, a hand-driven site stream, forged tokens, enrolment with a fresh CSR, a watch stream in a
thread, and the audit checks. Each helper is bounded: every call and every wait has a timeout."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fedgate.v1 import enrollment_service_pb2, enrollment_service_pb2_grpc, job_pb2, site_pb2, site_pb2_grpc
from gateway.errors import ClientError
from gateway.identity.principal import load_certificate
from gateway.identity.revocation import Revocation
from gateway.identity.tokens import TokenClaims, issue_token, new_token_id
from gateway.jobs.model import Job, JobEvent, JobSpec, Resources, StackRun
from gateway.transport.client import FederationClient, error_from_rpc
from gateway.trust.audit import AuditEntry
from gateway.trust.credentials import Credentials
from gateway.trust.service import verify_audit_store
from tests.integration.harness import FEDERATION, GatewayHandle

CALL_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 10.0
# A revoked credential's open stream must end within credential_check_s (0.2 s in the harness) plus one check
# period; this bound leaves room for a slow CI machine and still fails if the stream is never cut.
CUT_WITHIN_S = 2.0

ALICE = ("deepsea-ai", "alice")  # tenant A: no member list, every deepsea-ai user is a member
BOB = ("panda-lm", "bob")  # tenant B: a listed member


def spec_for(tenant: str = "deepsea-ai", project: str = "llama-sft") -> JobSpec:
    return JobSpec(
        tenant=tenant,
        project=project,
        resources=Resources("ascend-910b", None, 1),
        runs=(StackRun("cann", "", ("python3", "-c", "print('hi')")),),
    )


# ---- the store ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreState:
    """Everything a refused call could have changed: jobs, their event histories, and the revocations."""

    jobs: tuple[Job, ...]
    events: dict[str, tuple[JobEvent, ...]] = field(default_factory=dict)
    revocations: tuple[Revocation, ...] = ()


def store_state(gateway: GatewayHandle) -> StoreState:
    store = gateway.running.core.store
    jobs = store.list_jobs(None, page_size=1000).jobs
    return StoreState(jobs, {j.job_id: store.events(j.job_id) for j in jobs}, store.revocations())


# ---- refusals -------------------------------------------------------------------------------------------------
def refusal(call: Callable[[], object]) -> ClientError:
    """The error a call that must be refused raised (ClientError, or a raw grpc error translated to one)."""
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)  # a stream is refused when it is read
    except ClientError as exc:
        return exc
    except grpc.RpcError as exc:
        return error_from_rpc(exc)
    raise AssertionError("the call was expected to be refused, but it succeeded")


def assert_refused(call: Callable[[], object], code: str, reason: str | None = None) -> ClientError:
    error = refusal(call)
    assert error.code == code, f"expected {code}, got {error.code} ({error.reason}: {error.message})"
    if reason is not None:
        assert error.reason == reason, f"expected reason {reason}, got {error.reason} ({error.message})"
    return error


# ---- channels -------------------------------------------------------------------------------------------------
def ca_pem(gateway: GatewayHandle) -> bytes:
    return (gateway.pki.root / "ca" / "ca.pem").read_bytes()


def mtls_channel(address: str, ca: bytes, cert: bytes | None = None, key: bytes | None = None) -> grpc.Channel:
    """A raw channel; without `cert` it offers no client certificate at all."""
    return grpc.secure_channel(
        address, grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    )


def creds_channel(gateway: GatewayHandle, creds_dir: Path) -> grpc.Channel:
    creds = Credentials.from_dir(creds_dir)
    return mtls_channel(gateway.address, creds.ca_pem, creds.cert_pem, creds.key_pem)


def public_channel(gateway: GatewayHandle) -> grpc.Channel:
    """The public port as a CI system sees it: TLS that verifies the gateway, no client certificate."""
    return grpc.secure_channel(gateway.public_address, grpc.ssl_channel_credentials(root_certificates=ca_pem(gateway)))


def client_of(gateway: GatewayHandle, creds_dir: Path, address: str | None = None) -> FederationClient:
    """A client library instance for a credentials directory that `Credentials.from_dir` might not load (a
    certificate from a foreign CA, say): the PEM files are read as they are."""
    creds = Credentials(
        ca_pem=(creds_dir / "ca.pem").read_bytes(),
        cert_pem=(creds_dir / "cert.pem").read_bytes(),
        key_pem=(creds_dir / "key.pem").read_bytes(),
    )
    return FederationClient(address or gateway.address, creds, timeout=CALL_TIMEOUT_S)


def serial_of(creds_dir: Path) -> str:
    return f"{load_certificate((creds_dir / 'cert.pem').read_bytes()).serial_number:x}"


# ---- a hand-driven agent stream -------------------------------------------------------------------------------
class SiteStream:
    """A site stream driven by hand, to say things a real agent never would."""

    def __init__(self, gateway: GatewayHandle, creds_dir: Path) -> None:
        self.channel = creds_channel(gateway, creds_dir)
        self.outgoing: queue.Queue[site_pb2.ConnectRequest | None] = queue.Queue()
        stub = site_pb2_grpc.SiteServiceStub(self.channel)
        self.responses = stub.Connect(self._requests(), timeout=STREAM_TIMEOUT_S)

    def _requests(self) -> Iterator[site_pb2.ConnectRequest]:
        while (item := self.outgoing.get()) is not None:
            yield item

    def send(self, **kind: Any) -> None:
        self.outgoing.put(site_pb2.ConnectRequest(**kind))

    def next(self) -> site_pb2.ConnectResponse:
        """The next message; grpc.RpcError when the gateway ends the stream (bounded by the call's deadline)."""
        reply: site_pb2.ConnectResponse = next(self.responses)
        return reply

    def next_of(self, kind: str) -> site_pb2.ConnectResponse:
        """The next message of `kind` (welcome, launch, rejection, ack, ...), skipping others."""
        while (reply := self.next()).WhichOneof("kind") != kind:
            pass
        return reply

    def hello(self, site: str) -> site_pb2.ConnectResponse:
        self.send(hello=site_pb2.Hello(site=site, agent_version="security-test"))
        return self.next()

    def report(self, total: int = 8) -> None:
        pool = site_pb2.Pool(accelerator_class="ascend-910b", total=total, offered=total, free=total, cards_per_node=8)
        self.send(capacity=site_pb2.CapacityReport(full=True, pools=[pool]))

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def job_update(job_id: str, epoch: int, state: job_pb2.JobState, sequence: int, **extra: Any) -> site_pb2.JobUpdate:
    update = site_pb2.JobUpdate(job_id=job_id, epoch=epoch, state=state, sequence=sequence, **extra)
    update.time.FromDatetime(datetime.now(UTC))
    return update


# ---- a watch stream in a thread -------------------------------------------------------------------------------
class Watch:
    """`client.watch_job` read in a thread: the events seen, how it ended, and when."""

    def __init__(self, client: FederationClient, job_id: str) -> None:
        self.events: queue.Queue[JobEvent] = queue.Queue()
        self.error: ClientError | None = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(client, job_id), daemon=True)
        self._thread.start()

    def _run(self, client: FederationClient, job_id: str) -> None:
        try:
            for event, _job in client.watch_job(job_id, timeout=STREAM_TIMEOUT_S):
                self.events.put(event)
        except ClientError as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def first_event(self) -> JobEvent:
        return self.events.get(timeout=CALL_TIMEOUT_S)

    def join(self, timeout: float = STREAM_TIMEOUT_S) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the watch stream did not end"


# ---- tokens ---------------------------------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(part: dict[str, object]) -> str:
    return b64url(json.dumps(part, separators=(",", ":")).encode())


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(header, payload, signature) of a compact JWS, the signature left encoded."""
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def claims(gateway: GatewayHandle, tenant: str = "deepsea-ai", user: str = "ci-bot", **changes: Any) -> TokenClaims:
    """Well-formed claims for this gateway, valid for 15 minutes from now; `changes` override fields."""
    now = datetime.now(UTC).replace(microsecond=0)
    base = TokenClaims(
        issuer=f"spiffe://{FEDERATION}/gateway",
        subject=f"spiffe://{FEDERATION}/tenant/{tenant}/user/{user}",
        audience=gateway.running.trust.audience,
        issued_at=now,
        expires_at=now + timedelta(minutes=15),
        token_id=new_token_id(),
    )
    return replace(base, **changes)


def signed_token(gateway: GatewayHandle, token_claims: TokenClaims) -> str:
    """A token signed with the gateway's real token key: only its claims can make it unacceptable."""
    return issue_token(gateway.running.trust.authority.token_key, token_claims)


def token_public_key_raw(gateway: GatewayHandle) -> bytes:
    return gateway.running.trust.authority.token_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def token_public_key_pem(gateway: GatewayHandle) -> bytes:
    return gateway.running.trust.authority.token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---- enrolment ------------------------------------------------------------------------------------------------
def new_csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> tuple[Any, str]:
    """A CSR over `key` (default: a fresh EC P-256 key, as `fedgate agent enroll` makes), and the key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def enroll(gateway: GatewayHandle, join_token: str, site: str) -> enrollment_service_pb2.EnrollResponse:
    """Enroll on the public port as `fedgate agent enroll` would, with a fresh key; ClientError when refused."""
    _key, csr = new_csr()
    with public_channel(gateway) as channel:
        stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
        request = enrollment_service_pb2.EnrollRequest(join_token=join_token, csr_pem=csr, site=site)
        try:
            reply: enrollment_service_pb2.EnrollResponse = stub.Enroll(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
    return reply


def enroll_into(
    gateway: GatewayHandle,
    join_token: str,
    site: str,
    out_dir: Path,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> Path:
    """Enroll (with `key`, default a fresh EC P-256 one) and write a credentials directory from the answer, as
    the agent does."""
    key, csr = new_csr(key)
    with public_channel(gateway) as channel:
        stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
        request = enrollment_service_pb2.EnrollRequest(join_token=join_token, csr_pem=csr, site=site)
        reply = stub.Enroll(request, timeout=CALL_TIMEOUT_S)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (out_dir / "key.pem").write_bytes(key_pem)
    (out_dir / "cert.pem").write_text(reply.certificate_chain_pem)
    (out_dir / "ca.pem").write_text(reply.ca_bundle_pem)
    return out_dir


# ---- audit ----------------------------------------------------------------------------------------------------
def audited(gateway: GatewayHandle, kind: str, **details: str) -> list[AuditEntry]:
    """Audit entries of `kind` whose details include `details`."""
    return [
        e
        for e in gateway.running.core.store.audit_entries(0, 1000)
        if e.kind == kind and all(e.details.get(k) == v for k, v in details.items())
    ]


def assert_audit_intact(gateway: GatewayHandle) -> None:
    verdict = verify_audit_store(gateway.running.core.store, gateway.running.trust.authority)
    assert verdict.intact, verdict.problem
