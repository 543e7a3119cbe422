"""Who may see and touch what. Pure checks over a principal and a job; no I/O.

Owns: the authorisation rules of the job and admin surfaces. The transport layer calls these after it has
turned a verified certificate into a `Principal`; it never decides access itself.
"""

from __future__ import annotations

from gateway.errors import NotFound, PermissionDenied
from gateway.identity.principal import Principal
from gateway.model import Job


def can_see_job(principal: Principal, job: Job) -> bool:
    if principal.kind == "admin":
        return True
    return principal.kind == "user" and principal.tenant == job.spec.tenant


def require_job_access(principal: Principal, job: Job) -> None:
    """Refuse exactly as for a job that does not exist, so other tenants learn nothing about it."""
    if not can_see_job(principal, job):
        raise NotFound(f"job {job.job_id} not found", reason="JOB_NOT_FOUND")


def visible_tenants(principal: Principal, requested: str) -> tuple[str, ...] | None:
    """Tenants a listing may cover: None means all (admins); a user only ever gets their own tenant."""
    if principal.kind == "admin":
        return (requested,) if requested else None
    if principal.kind != "user":
        raise PermissionDenied(f"a {principal.kind} principal cannot list jobs", reason="ROLE_CANNOT_LIST")
    if requested and requested != principal.tenant:
        raise PermissionDenied(f"{principal.uri} cannot list jobs of tenant {requested!r}", reason="TENANT_MISMATCH")
    return (principal.tenant,)


def require_role(principal: Principal, *kinds: str) -> None:
    if principal.kind not in kinds:
        raise PermissionDenied(
            f"this call needs a {' or '.join(kinds)} principal; {principal.uri} is a {principal.kind}",
            reason="WRONG_ROLE",
        )
