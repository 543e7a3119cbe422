"""The gateway's settings: checked-in defaults, then the operator's YAML, then validation.

Owns: `GatewayConfig` (frozen, one comment per field on what it is and why) and loading it strictly.
Relative paths in the file resolve against the file's folder, so a config directory can move as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fedgate.common.metrics_http import MetricsEndpoint, parse_endpoint
from fedgate.common.yaml import YamlDocument, load_yaml
from gateway.errors import ConfigError
from gateway.policy.document import REPO_POLICIES as REPO_POLICIES  # noqa: PLC0414 (re-exported for callers)
from gateway.store import resolve_store_url


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the federation CA bundle clients must chain to
    cert: Path  # the gateway's server certificate (SAN: its host names and IPs)
    key: Path  # its private key, mode 0600


@dataclass(frozen=True)
class GatewayConfig:
    federation: str  # federation name: the trust domain of every spiffe:// identity accepted
    listen: str  # host:port; port 0 picks a free port (reported in the ready file)
    tls: TlsFiles
    # Store URL, see gateway.store.open_store: in the config file `sqlite:///RELATIVE` is relative to the config
    # file's folder, `sqlite:////ABSOLUTE` absolute (on the command line, relative to the current directory).
    store: str = "sqlite:///fedgate-gateway.db"
    policy: Path = REPO_POLICIES / "federation.yaml"  # the federation policy (tenants, projects, ...)
    catalogue: Path = REPO_POLICIES / "accelerators.yaml"  # the accelerator catalogue
    report_interval: timedelta = timedelta(seconds=2)  # how often agents send capacity reports
    schedule_period: timedelta = timedelta(seconds=1)  # the scheduler also runs at least this often
    max_message_bytes: int = 4 * 1024 * 1024  # larger gRPC messages are refused before parsing
    # The federation CA directory (ca.pem, ca-key.pem); the gateway signs enrolments and renewals with it and
    # keeps its token and audit signing keys there (made on first start, mode 0600).
    authority: Path = Path("ca")
    # Optional second port: TLS without client certificates, serving only Enroll (join tokens) and the
    # JobService for bearer tokens. Everything else exists on `listen` only.
    public_listen: str = ""
    certificate_lifetime: timedelta = timedelta(days=90)  # of certificates the gateway signs
    credential_check: timedelta = timedelta(seconds=1)  # open streams are cut this soon after a revocation
    policy_watch: timedelta = timedelta(seconds=2)  # how often the policy file is checked for changes; 0: never
    # Where Prometheus scrapes the gateway's metrics (host:port; empty: not served): plain HTTP on loopback,
    # mutual TLS anywhere else (the scraper presents a certificate of the federation CA; the gateway presents
    # `tls.cert`). `metrics_mtls: true` asks for mTLS on loopback too; off loopback it cannot be turned off.
    metrics: MetricsEndpoint | None = None
    # Where the status page is served (host:port; empty: not served), always over TLS with `tls.cert`, and only
    # to a caller the API would answer: a client certificate of the federation CA or `Authorization: Bearer`.
    status: MetricsEndpoint | None = None
    # A site the gateway has not heard from (a capacity report, an update, a reply) for this long is declared
    # lost: its attempts become LOST and are queued again by their policy. Agents fence (stop) their local
    # attempts well within it (docs/reliability.md), so a replacement never runs beside the old attempt.
    site_lease: timedelta = timedelta(seconds=30)
    # After the gateway starts, no site is declared lost before this much time has passed, whatever it last
    # heard before the restart: every site gets the whole period to reconnect.
    restart_grace: timedelta = timedelta(seconds=60)
    # On SIGTERM, how long in-flight calls get to finish before the gateway stops anyway.
    shutdown_grace: timedelta = timedelta(seconds=5)
    # Several gateways on one PostgreSQL store elect a leader with a lease of this length in the database: the
    # leader renews it every third of it; a standby looks every sixth and takes over once it has expired. A
    # leader killed with -9 is replaced after about this long plus a second or two (docs/reliability.md).
    leader_lease: timedelta = timedelta(seconds=6)
    # The address clients and agents are sent to when this gateway leads (host:port, in NOT_LEADER answers of
    # the standbys). Empty: `listen` with its bound port, right when `listen` names a host others can reach.
    advertise: str = ""
    # The signed checkpoint of the audit chain's end and of the revocation list (docs/security.md, The audit
    # log): a file the database administrator cannot write. Empty: `audit-checkpoint.json` in `authority`.
    audit_checkpoint: Path | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.audit_checkpoint or self.authority / "audit-checkpoint.json"

    @property
    def suspect_after(self) -> timedelta:
        """A site silent this long (two report intervals and a half: heartbeats missed) is shown as suspect."""
        return min(self.report_interval * 2.5, self.site_lease / 2)


KEYS = {
    "apiVersion",
    "kind",
    "federation",
    "listen",
    "tls",
    "store",
    "audit_checkpoint",
    "policy",
    "catalogue",
    "report_interval_s",
    "schedule_period_s",
    "max_message_bytes",
    "authority",
    "public_listen",
    "certificate_days",
    "credential_check_s",
    "policy_watch_s",
    "metrics_listen",
    "metrics_mtls",
    "status_listen",
    "site_lease_s",
    "restart_grace_s",
    "shutdown_grace_s",
    "leader_lease_s",
    "advertise",
}


def load_gateway_config(path: Path) -> GatewayConfig:
    doc = load_yaml(path, error=ConfigError)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "a gateway config must be a mapping")
    for key in data:
        if key not in KEYS:
            raise doc.error((key,), "unknown key", f"valid keys: {', '.join(sorted(KEYS))}")
    if data.get("apiVersion") != "fedgate.io/v1" or data.get("kind") != "Gateway":
        raise doc.error((), "expected apiVersion: fedgate.io/v1 and kind: Gateway")
    base = path.resolve().parent

    def text(key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            raise doc.error((key,), "must be a non-empty string")
        return value

    def file(value: object, where: tuple[str, ...]) -> Path:
        if not isinstance(value, str):
            raise doc.error(where, "must be a path")
        resolved = base / value
        if not resolved.is_file():
            raise doc.error(where, f"file {resolved} does not exist", "check the path (relative to the config file)")
        return resolved

    def seconds(key: str, default: float) -> timedelta:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise doc.error((key,), "must be a positive number of seconds")
        return timedelta(seconds=value)

    tls = data.get("tls")
    if not isinstance(tls, dict) or set(tls) != {"ca", "cert", "key"}:
        raise doc.error(("tls",), "needs exactly ca, cert and key", "make them with `fedgate ca issue --server`")
    store = text("store", "sqlite:///fedgate-gateway.db")
    store = resolve_store_url(store, base)  # sqlite:///RELATIVE: relative to this file's folder
    max_bytes = data.get("max_message_bytes", 4 * 1024 * 1024)
    if not isinstance(max_bytes, int) or not 1024 <= max_bytes <= 64 * 1024 * 1024:
        raise doc.error(("max_message_bytes",), "must be an integer between 1024 and 67108864")
    report_interval = seconds("report_interval_s", 2)
    site_lease = seconds("site_lease_s", 30)
    if site_lease < report_interval * 3:
        raise doc.error(
            ("site_lease_s",),
            f"must be at least three report intervals ({3 * report_interval.total_seconds():g} s)",
            "a site sends a capacity report every report interval; the lease must outlast a few missed ones",
        )
    return GatewayConfig(
        federation=text("federation"),
        listen=text("listen"),
        tls=TlsFiles(*(file(tls[k], ("tls", k)) for k in ("ca", "cert", "key"))),
        store=store,
        policy=file(data["policy"], ("policy",)) if "policy" in data else REPO_POLICIES / "federation.yaml",
        catalogue=file(data["catalogue"], ("catalogue",))
        if "catalogue" in data
        else REPO_POLICIES / "accelerators.yaml",
        report_interval=report_interval,
        schedule_period=seconds("schedule_period_s", 1),
        max_message_bytes=max_bytes,
        authority=_directory(doc, base, data.get("authority")),
        public_listen=text("public_listen") if "public_listen" in data else "",
        certificate_lifetime=timedelta(days=seconds("certificate_days", 90).total_seconds()),
        credential_check=seconds("credential_check_s", 1),
        policy_watch=timedelta(0) if data.get("policy_watch_s") == 0 else seconds("policy_watch_s", 2),
        metrics=_metrics(doc, data.get("metrics_listen", ""), data.get("metrics_mtls")),
        status=_status(doc, data.get("status_listen", "")),
        site_lease=site_lease,
        restart_grace=seconds("restart_grace_s", 60),
        shutdown_grace=seconds("shutdown_grace_s", 5),
        leader_lease=seconds("leader_lease_s", 6),
        advertise=text("advertise") if "advertise" in data else "",
        audit_checkpoint=base / text("audit_checkpoint") if "audit_checkpoint" in data else None,
    )


def _directory(doc: YamlDocument, base: Path, value: object) -> Path:
    if value is None:
        raise doc.error(
            ("authority",), "missing", "add `authority: DIR`, the federation CA directory made by `fedgate ca init`"
        )
    if not isinstance(value, str) or not (base / value).is_dir():
        raise doc.error(
            ("authority",), f"{value!r} is not a directory", "point it at the CA directory (fedgate ca init)"
        )
    return base / value


def check_exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    return path


def _metrics(doc: YamlDocument, listen: object, mtls: object) -> MetricsEndpoint | None:
    if mtls is not None and not isinstance(mtls, bool):
        raise doc.error(("metrics_mtls",), "must be true or false")
    if listen == "":
        if mtls is not None:
            raise doc.error(("metrics_mtls",), "says how metrics are served, but metrics_listen is not set")
        return None
    found = parse_endpoint(listen, mtls) if isinstance(listen, str) else "must be host:port"
    if isinstance(found, str):
        raise doc.error(("metrics_listen",), found)
    return found


def _status(doc: YamlDocument, listen: object) -> MetricsEndpoint | None:
    if listen == "":
        return None
    found = parse_endpoint(listen, True) if isinstance(listen, str) else "must be host:port"
    if isinstance(found, str):
        raise doc.error(("status_listen",), found.replace("metrics", "the status page"))
    return found
