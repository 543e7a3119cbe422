"""Who may see and touch what. Pure checks over a principal, a job and the policy in force; no I/O.

Owns: the authorisation rules of the job and admin surfaces: an admin may do everything; a tenant user acts
in its own tenant as a member (submit, cancel, read) or a viewer (read only), as the policy's member list says
(no list: every user of the tenant is a member), and a read-only token never acts. Sites never use these
surfaces. The transport layer calls these after it has turned a verified credential into a `Principal`.
"""

from __future__ import annotations

from gateway.errors import NotFound, PermissionDenied
from gateway.identity.principal import Principal
from gateway.jobs.model import Job
from gateway.policy import FederationPolicy

ACTING_ROLES = frozenset({"admin", "member"})


def role_in(principal: Principal, policy: FederationPolicy, tenant: str, project: str = "") -> str | None:
    """The principal's role for `tenant` (and `project`): admin, member, viewer, or None. In a joint project
    the job's tenant does not matter: every member of the project, from whichever tenant, has its role there."""
    if principal.kind == "admin":
        return "admin"
    if principal.kind == "user" and project in policy.joint:
        return _joint_role(principal, policy, project)
    if principal.kind != "user" or principal.tenant != tenant or tenant not in policy.tenants:
        return None
    members = policy.tenants[tenant].members
    role = "member"
    if members:
        member = members.get(principal.name)
        if member is None or (project and member.projects and project not in member.projects):
            return None
        role = member.role
    return "viewer" if principal.read_only else role


def _joint_role(principal: Principal, policy: FederationPolicy, project: str) -> str | None:
    own = policy.tenants.get(principal.tenant)
    if own is None:
        return None
    for member in policy.joint[project].members:
        if member.tenant != principal.tenant or member.user not in ("", principal.name):
            continue
        if not member.user and own.members and principal.name not in own.members:
            return None  # "every member of the tenant": this user is not one
        base = own.members[principal.name].role if (not member.user and own.members) else "member"
        role = "viewer" if "viewer" in (member.role, base) else "member"
        return "viewer" if principal.read_only else role
    return None


def joint_projects_of(principal: Principal, policy: FederationPolicy) -> tuple[str, ...]:
    """The joint projects whose jobs the principal may see, whichever tenant submitted them."""
    if principal.kind != "user":
        return ()
    return tuple(sorted(p for p in policy.joint if _joint_role(principal, policy, p) is not None))


def can_see_job(principal: Principal, job: Job, policy: FederationPolicy) -> bool:
    return role_in(principal, policy, job.spec.tenant, job.spec.project) is not None


def require_job_access(principal: Principal, job: Job, policy: FederationPolicy, *, act: bool = False) -> None:
    """Refuse exactly as for a job that does not exist, so that other tenants learn nothing about it; a viewer
    who may see the job but not act on it is told so."""
    role = role_in(principal, policy, job.spec.tenant, job.spec.project)
    if role is None:
        raise NotFound(f"job {job.job_id} not found", reason="JOB_NOT_FOUND")
    if act and role not in ACTING_ROLES:
        raise PermissionDenied(f"{principal.uri} may read job {job.job_id} but not act on it", reason="READ_ONLY")


def require_member(principal: Principal, policy: FederationPolicy, tenant: str, project: str) -> None:
    role = role_in(principal, policy, tenant, project)
    if role is None and principal.kind == "user" and (principal.tenant == tenant or project in policy.joint):
        raise PermissionDenied(f"{principal.uri} is not a member of {tenant}/{project}", reason="NOT_A_MEMBER")
    if role not in ACTING_ROLES:
        raise PermissionDenied(f"{principal.uri} may not submit to {tenant}/{project}", reason="READ_ONLY")


def require_submitter(principal: Principal, policy: FederationPolicy, tenant: str, project: str) -> None:
    """May `principal` create an object (a job, a reservation) for `tenant`/`project`? Checked first, before
    anything is looked up by a key the caller chose (a request id): a site, a viewer or another tenant's user
    learns nothing from a create call. A tenant the policy does not know is left to admission to name."""
    if principal.kind not in {"user", "admin"}:
        raise PermissionDenied(
            f"a {principal.kind} principal cannot create jobs or reservations", reason="ROLE_CANNOT_SUBMIT"
        )
    if principal.kind == "user" and principal.tenant != tenant:
        raise PermissionDenied(
            f"{principal.uri} belongs to tenant {principal.tenant!r} and cannot act for tenant {tenant!r}",
            reason="TENANT_MISMATCH",
        )
    if principal.kind == "user" and (tenant in policy.tenants or project in policy.joint):
        require_member(principal, policy, tenant, project)
    elif principal.read_only:
        raise PermissionDenied(f"{principal.uri} is a read-only token", reason="READ_ONLY")


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
