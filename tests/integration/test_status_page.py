"""The status page: served over TLS behind the API's authentication (a client certificate of the federation CA
or a bearer token), showing each caller only what the API would show them, and rendered by a real browser.

Chromium cannot present a bearer token from its command line, and giving it a client certificate needs an NSS
database. The browser test therefore loads the page through a loopback proxy of the test that adds the
`Authorization: Bearer` header on its way to the gateway's HTTPS endpoint (verifying the gateway against the
CA): the gateway sees exactly what a token-holding client sends, and the product accepts no other credential
(no query-string token, no cookie)."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.conftest import require_service
from tests.integration.harness import (
    FEDERATION,
    GatewayHandle,
    LoopThread,
    Pki,
    start_test_agent,
    start_test_gateway,
    wait_for_capacity,
)
from tests.jobs import JOB_PYTHON
from tests.waiting import eventually

CHROMIUM_TIMEOUT_S = 60


@pytest.fixture
def status_gateway(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[GatewayHandle]:
    (tmp_path / "gateway").mkdir()
    handle = start_test_gateway(pki, tmp_path / "gateway", loop, extra={"status_listen": "127.0.0.1:0"})
    yield handle
    handle.stop()


def context(pki: Pki, creds: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.root / "ca" / "ca.pem"))
    if creds is not None:
        ctx.load_cert_chain(creds / "cert.pem", creds / "key.pem")
    return ctx


def fetch(gateway: GatewayHandle, ctx: ssl.SSLContext, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"https://127.0.0.1:{gateway.running.status_port}/", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=ctx) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def token(gateway: GatewayHandle, tenant: str, user: str, role: str) -> str:
    admin = Principal.admin(FEDERATION, "root")
    issued, _ = gateway.running.trust.issue_token(admin, tenant, user, role, timedelta(minutes=10), False)
    return issued


def test_the_status_page_needs_a_credential_and_shows_the_caller(status_gateway: GatewayHandle, pki: Pki) -> None:
    status, body = fetch(status_gateway, context(pki))
    assert status == 401 and "client certificate" in body
    status, body = fetch(status_gateway, context(pki), {"Authorization": "Bearer not-a-token"})
    assert status == 401
    status, body = fetch(status_gateway, context(pki, pki.user("deepsea-ai", "alice")))
    assert status == 200 and f"spiffe://{FEDERATION}/tenant/deepsea-ai/user/alice" in body
    status, body = fetch(
        status_gateway, context(pki), {"Authorization": f"Bearer {token(status_gateway, 'panda-lm', 'bob', 'member')}"}
    )
    assert status == 200 and "panda-lm/user/bob" in body


def test_a_certificate_of_another_ca_is_refused(status_gateway: GatewayHandle, pki: Pki) -> None:
    foreign = pki.root / "issued" / "foreign-alice"
    if not (foreign / "cert.pem").exists():
        pki.foreign.issue(Principal.user(FEDERATION, "deepsea-ai", "alice"), foreign)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        fetch(status_gateway, context(pki, foreign))


class BearerProxy(http.server.ThreadingHTTPServer):
    """Loopback HTTP in front of the status endpoint: adds `Authorization: Bearer` and verifies the gateway."""

    def __init__(self, target: str, bearer: str, ctx: ssl.SSLContext) -> None:
        proxy = self

        class Forward(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                request = urllib.request.Request(target + self.path, headers={"Authorization": f"Bearer {bearer}"})
                try:
                    with urllib.request.urlopen(request, timeout=10, context=ctx) as reply:
                        status, kind, body = reply.status, reply.headers["Content-Type"], reply.read()
                except urllib.error.HTTPError as exc:
                    status, kind, body = exc.code, exc.headers["Content-Type"], exc.read()
                proxy.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Forward)
        self.requests = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def chromium(*args: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        require_service("Chromium", "no chromium binary on PATH (Debian: apt-get install chromium)")
    assert binary is not None
    done = subprocess.run(
        [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage", *args],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=True,
    )
    return done.stdout


def job(tenant: str, project: str, name: str, cards: int, script: str) -> JobSpec:
    return JobSpec(
        tenant,
        project,
        Resources("ascend-910b", None, cards),
        (StackRun("cann", "", (JOB_PYTHON, "-c", script)),),
        name=name,
    )


def test_chromium_shows_a_viewer_their_tenants_jobs_and_the_sites_only(
    status_gateway: GatewayHandle, pki: Pki, tmp_path: Path
) -> None:
    gateway = status_gateway
    pools = [{"class": "ascend-910b", "cards": 4, "offered": 2, "cards_per_node": 4}]
    agent = start_test_agent(gateway, "centre-s", pools, tmp_path / "agent")
    try:
        wait_for_capacity(gateway, "centre-s")
        with (
            gateway.client(pki.user("deepsea-ai", "alice")) as alice,
            gateway.client(pki.user("panda-lm", "bob")) as bob,
        ):
            done = bob.create_job(job("panda-lm", "eval", "eval-done", 1, "pass"))
            eventually(lambda: bob.get_job(done.job_id).state == JobState.SUCCEEDED, what="bob's first job ended")
            hidden = alice.create_job(
                job("deepsea-ai", "llama-sft", "alice-holds-the-cards", 2, "import time; time.sleep(120)")
            )
            eventually(lambda: alice.get_job(hidden.job_id).state == JobState.RUNNING, what="alice's job runs")
            waiting = bob.create_job(job("panda-lm", "eval", "eval-waits", 2, "pass"))
            eventually(lambda: bob.get_job(waiting.job_id).reasons, what="a reason for bob's queued job")
        viewer = token(gateway, "panda-lm", "carol", "viewer")
        proxy = BearerProxy(f"https://127.0.0.1:{gateway.running.status_port}", viewer, context(pki))
        try:
            dom = chromium("--dump-dom", proxy.url)
            shot = tmp_path / "status.png"
            chromium(f"--screenshot={shot}", "--window-size=1100,1300", "--hide-scrollbars", proxy.url)
        finally:
            proxy.shutdown()
        assert proxy.requests >= 2  # both loads went through the gateway, not a cache
        assert "panda-lm/user/carol" in dom
        assert 'id="cards-chart"' in dom and "centre-s ascend-910b" in dom  # the sites: every member sees them
        assert done.job_id in dom and waiting.job_id in dom  # the viewer's tenant's jobs, the queued one's reason
        assert hidden.job_id not in dom and "alice-holds-the-cards" not in dom  # never another tenant's
        queue = dom[dom.index('id="queue"') : dom.index('id="recent"')]
        assert waiting.job_id in queue and done.job_id not in queue
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"status page screenshot: {shot}")
    finally:
        agent.stop()
