"""The reason codes of fedgate, one enum for the gateway and the agent: the stable words users and scripts read.

Owns: `ReasonCode`, every code the gateway or an agent gives for a refusal (an error's `reason`, the gRPC
ErrorInfo reason) or for a step of a job's or reservation's reason chain (`fedgate job explain`), each with what
it means and what the user can do; `ReasonStage`, the stages of a reason chain; `render_markdown`, which writes
`docs/reasons.md` from them, and `render_proto`, which writes the contract's `fedgate.v1.ReasonCode` and
`fedgate.v1.ReasonStage` enums (proto/fedgate/v1/reason.proto). A member's value is its code string, so the wire
and stored records do not change; its number in the proto enum is its position here, so new codes go at the end
(`buf breaking` refuses a renumbered one). Run `python -m fedgate.common.reasons > docs/reasons.md` and
`python -m fedgate.common.reasons --proto > proto/fedgate/v1/reason.proto` (then `make proto`) after adding a
code; tests check both files are current and that every code string in `gateway/` and `agents/` is a member. It
imports neither side.
"""

from __future__ import annotations

import enum
from typing import Literal

Kind = Literal["error", "chain"]
"""`error`: a refused call, command or launch; `chain`: a step of a job's or reservation's reason chain."""


class ReasonCode(enum.StrEnum):
    """A stable reason code. `doc` says what it means and what the user can do; `kind` where it is seen."""

    _value_: str
    doc: str
    kind: Kind

    def __new__(cls, code: str, kind: Kind, doc: str) -> ReasonCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.kind = kind
        member.doc = doc
        return member

    GATEWAY_ERROR = (
        "GATEWAY_ERROR",
        "error",
        "The gateway refused the call for a reason it did not classify further. Read the message; report it "
        "if it does not say what to change.",
    )
    INVALID_ARGUMENT = (
        "INVALID_ARGUMENT",
        "error",
        "The request is malformed. The message names the field; fix it and send again.",
    )
    INVALID_CONFIG = (
        "INVALID_CONFIG",
        "error",
        "A configuration, policy, job or agent YAML file is invalid. The message names file, line, field and fix.",
    )
    NOT_FOUND = (
        "NOT_FOUND",
        "error",
        "The named object does not exist, or you may not see it. Check the id and your tenant.",
    )
    ALREADY_EXISTS = (
        "ALREADY_EXISTS",
        "error",
        "An object with this name or id already exists. Pick another name, or use the existing one.",
    )
    UNAUTHENTICATED = (
        "UNAUTHENTICATED",
        "error",
        "The caller could not be identified. Present a valid certificate or token.",
    )
    PERMISSION_DENIED = (
        "PERMISSION_DENIED",
        "error",
        "The caller is known but may not do this. Ask a federation admin for the role or membership.",
    )
    ADMISSION_REJECTED = (
        "ADMISSION_REJECTED",
        "error",
        "The federation policy refused the job. `fedgate job explain` shows the policy step that decided.",
    )
    FAILED_PRECONDITION = (
        "FAILED_PRECONDITION",
        "error",
        "The object is not in a state that allows this. Wait for it to change state, or act on it differently.",
    )
    STALE_EPOCH = (
        "STALE_EPOCH",
        "error",
        "A site spoke about an attempt that is no longer the job's current lease; the agent drops the old attempt.",
    )
    BAD_IDENTITY = (
        "BAD_IDENTITY",
        "error",
        "A certificate or principal is malformed or belongs to another federation. Re-enrol, or use this "
        "federation's credentials.",
    )
    UNAVAILABLE = (
        "UNAVAILABLE",
        "error",
        "The gateway cannot serve this now (for example a standby without the lease). Retry, or connect to "
        "another gateway address.",
    )
    NOT_LEADER = (
        "NOT_LEADER",
        "error",
        "This gateway is a standby (or was the leader and lost its lease): only the leader takes work and "
        "serves agents. ErrorInfo metadata `leader` names the leader's address when one is known; retry "
        "there, or give clients every gateway address (they follow the leader by themselves).",
    )
    STORE_UNAVAILABLE = (
        "STORE_UNAVAILABLE",
        "error",
        "The gateway cannot read or write its store now (an I/O error, a read-only or lost disk). Nothing the "
        "gateway acknowledged before is lost; retry later. Operators: the gateway log names the cause.",
    )
    STORE_FULL = (
        "STORE_FULL",
        "error",
        "The disk under the gateway's store is full, so new work is refused; reads still work and nothing "
        "acknowledged before is lost. Retry later. Operators: free space on the store's disk.",
    )
    STORE_IN_USE = (
        "STORE_IN_USE",
        "error",
        "Another gateway process already runs on this SQLite store, and two would both dispatch. Stop the other "
        "one (the message gives its pid), or give this gateway its own store; several gateways need PostgreSQL.",
    )
    STORE_DAMAGED = (
        "STORE_DAMAGED",
        "error",
        "The store file exists but is not a sound fedgate database (empty, not SQLite, corrupted, or another "
        "program's). The gateway refuses to start rather than start empty. Restore the file from a backup.",
    )
    STORE_TOO_NEW = (
        "STORE_TOO_NEW",
        "error",
        "The store was written by a newer fedgate (a higher schema version). Run that version, or restore a "
        "backup taken before the upgrade.",
    )
    STORE_NOT_WRITABLE = (
        "STORE_NOT_WRITABLE",
        "error",
        "The store file or its directory cannot be written (permissions, a read-only mount). Fix the "
        "permissions or the mount; the gateway needs to write the file, its -wal and -shm files and its .lock.",
    )
    STORE_MISSING = (
        "STORE_MISSING",
        "error",
        "A read-only look at a store (an offline audit check) found no database file there. Check the path.",
    )
    RECORDS_TAMPERED = (
        "RECORDS_TAMPERED",
        "error",
        "The audit log or the revocation list in the store does not match the gateway's signed checkpoint (entries "
        "removed from its end, revocations deleted or edited). The gateway refuses to start; restore the store "
        "from a backup (see docs/security.md).",
    )
    CALL_FAILED = (
        "CALL_FAILED",
        "error",
        "The client library's call was refused; the gRPC status and the message say why.",
    )
    INTERNAL = (
        "INTERNAL",
        "error",
        "An unexpected error in the gateway. The message carries a ref= that the gateway log has the details under.",
    )
    USAGE = (
        "USAGE",
        "error",
        "A CLI command was missing what it needs (gateway address, credentials, a class). The message says "
        "which flag to add.",
    )
    BAD_CARD_COUNT = (
        "BAD_CARD_COUNT",
        "error",
        "A job asks for a number of cards that is not allowed (below 1, or above a limit). Ask for a valid count.",
    )
    BAD_RESOURCES = (
        "BAD_RESOURCES",
        "error",
        "A job's resources are inconsistent (a class and a capability at once, or neither; or nodes that its cards"
        " do not split over evenly). Give one of class and capability, and cards divisible by nodes.",
    )
    BAD_MAX_RUNTIME = (
        "BAD_MAX_RUNTIME",
        "error",
        "A job's max_runtime is not a positive duration within the limit. Give a valid duration.",
    )
    BAD_DURATION = (
        "BAD_DURATION",
        "error",
        "A duration is not written as the job file expects (e.g. 2h30m). Write it as the message shows.",
    )
    BAD_TIME = "BAD_TIME", "error", "A time is not an ISO 8601 instant with a time zone. Write it as the message shows."
    BAD_NAME = (
        "BAD_NAME",
        "error",
        "A tenant, project, site or user name breaks the naming rule. Use lowercase letters, digits and '-'.",
    )
    NO_RUN = "NO_RUN", "error", "A job carries no run (image and command per stack). Add at least one run."
    UNKNOWN_ACCELERATOR_CLASS = (
        "UNKNOWN_ACCELERATOR_CLASS",
        "error",
        "The accelerator class is not in the federation's catalogue (or the site's pools). Use a class from "
        "`fedgate job sites` or policies/accelerators.yaml.",
    )
    UNKNOWN_STORE = (
        "UNKNOWN_STORE",
        "error",
        "The gateway config names a store it does not know. Use one of the stores the message lists.",
    )
    STORE_SCHEMA_TOO_NEW = (
        "STORE_SCHEMA_TOO_NEW",
        "error",
        "The store's database was written by a newer fedgate (its schema version is above this release's); "
        "the gateway leaves it unchanged and does not start. Run the release that wrote it, or a newer one.",
    )
    STORE_UNREACHABLE = (
        "STORE_UNREACHABLE",
        "error",
        "The gateway cannot reach its PostgreSQL store (down, restarting, or refusing the connection). Retry "
        "(a submission retried with the same request id is admitted once); operators check the server named.",
    )
    CA_EXISTS = (
        "CA_EXISTS",
        "error",
        "`fedgate gateway init` would overwrite an existing federation CA. Point at the existing CA or pick "
        "an empty folder.",
    )
    MISSING_CREDENTIALS = (
        "MISSING_CREDENTIALS",
        "error",
        "A certificate, key or CA file the command needs does not exist. Issue or enrol credentials first.",
    )
    NO_CLIENT_CERTIFICATE = (
        "NO_CLIENT_CERTIFICATE",
        "error",
        "The call came without a client certificate on the mTLS port. Enrol, or get a certificate from your admin.",
    )
    NO_TOKEN = (
        "NO_TOKEN",
        "error",
        "The call on the token port carried no bearer token. Issue one with `fedgate admin token issue`, or use mTLS.",
    )
    FOREIGN_FEDERATION = (
        "FOREIGN_FEDERATION",
        "error",
        "The certificate or name belongs to another federation. Use credentials issued by this federation's CA.",
    )
    EXPIRED = (
        "EXPIRED",
        "error",
        "The certificate or token has expired. Renew the certificate (the agent does it itself) or issue a new token.",
    )
    NOT_YET_VALID = (
        "NOT_YET_VALID",
        "error",
        "The certificate or token is not valid yet. Check the clocks of the caller and the gateway.",
    )
    REVOKED = "REVOKED", "error", "The certificate or token has been revoked by an admin. Ask for new credentials."
    TOKEN_REPLAYED = (
        "TOKEN_REPLAYED",
        "error",
        "A single-use token was presented a second time. Issue a new token for each use.",
    )
    WRONG_CREDENTIAL = (
        "WRONG_CREDENTIAL",
        "error",
        "Only a certificate can be renewed, not a token. Renew with the site's certificate.",
    )
    WRONG_ROLE = (
        "WRONG_ROLE",
        "error",
        "The call needs another kind of principal (user, admin or site). Call it with the right credentials.",
    )
    JOIN_TOKEN_MALFORMED = (
        "JOIN_TOKEN_MALFORMED",
        "error",
        "The join token is not of the form fgj_<id>.<secret>. Copy it again from the admin.",
    )
    JOIN_TOKEN_UNKNOWN = (
        "JOIN_TOKEN_UNKNOWN",
        "error",
        "The gateway does not know this join token. Ask the admin for a new one.",
    )
    JOIN_TOKEN_USED = (
        "JOIN_TOKEN_USED",
        "error",
        "The join token was already used; each enrols once. Ask the admin for a new one.",
    )
    JOIN_TOKEN_EXPIRED = "JOIN_TOKEN_EXPIRED", "error", "The join token has expired. Ask the admin for a new one."
    JOIN_TOKEN_WRONG_SITE = (
        "JOIN_TOKEN_WRONG_SITE",
        "error",
        "The join token enrols another site. Enrol under the site name the token was made for.",
    )
    TENANT_MISMATCH = (
        "TENANT_MISMATCH",
        "error",
        "The caller acts for a tenant other than its own. Submit and read only your own tenant's jobs.",
    )
    REQUEST_ID_REUSED = (
        "REQUEST_ID_REUSED",
        "error",
        "The request id was already used for a different request (or for one you may not see). A retry must send "
        "the same request with the same id; for a new request choose a new request id.",
    )
    BAD_PAGE_TOKEN = (
        "BAD_PAGE_TOKEN",
        "error",
        "The page token is not one this gateway gave for this listing (or it was changed). Send the "
        "next_page_token of the previous page unchanged, or none for the first page.",
    )
    JOB_TOO_LARGE_TO_LIST = (
        "JOB_TOO_LARGE_TO_LIST",
        "chain",
        "The job (stored before job specs were bounded) is too large for a listing: it is listed without its "
        "command, env and labels. Read it whole with `fedgate job get`.",
    )
    JOB_SPEC_INVALID = (
        "JOB_SPEC_INVALID",
        "error",
        "A job spec field is malformed or over its limit (name, command, env, labels, image, cards, total size). "
        "The message names the field and the limit; the limits are in the comments of proto/fedgate/v1/job.proto.",
    )
    NOT_A_MEMBER = (
        "NOT_A_MEMBER",
        "error",
        "The caller is not a member of the project. Ask the admin to add you to the project.",
    )
    READ_ONLY = "READ_ONLY", "error", "The caller may read this object but not change it. Ask its owner or an admin."
    ROLE_CANNOT_SUBMIT = (
        "ROLE_CANNOT_SUBMIT",
        "error",
        "The caller's role may not submit jobs (e.g. a viewer). Ask for the member role.",
    )
    ROLE_CANNOT_LIST = (
        "ROLE_CANNOT_LIST",
        "error",
        "This kind of principal cannot list jobs. List with a user's credentials.",
    )
    JOB_NOT_FOUND = "JOB_NOT_FOUND", "error", "No such job, or not one you may see. Check the id and your tenant."
    SITE_NOT_FOUND = (
        "SITE_NOT_FOUND",
        "error",
        "The site has never connected to this gateway. Check the name; the agent must connect once.",
    )
    JOB_NOT_STARTED = (
        "JOB_NOT_STARTED",
        "error",
        "The job has no running attempt yet, so it has no logs. `fedgate job watch` shows when it starts.",
    )
    NO_HELLO = "NO_HELLO", "error", "An agent did not send Hello first, in time. Upgrade or restart the agent."
    BAD_RENDEZVOUS = (
        "BAD_RENDEZVOUS",
        "error",
        "An agent's Hello named a rendezvous point that cannot be used (not a host name, or ports outside "
        "1-65535). Fix `rendezvous:` in the agent's config.",
    )
    DUPLICATE_HELLO = (
        "DUPLICATE_HELLO",
        "error",
        "An agent sent Hello twice on one stream. Upgrade or restart the agent.",
    )
    SITE_MISMATCH = (
        "SITE_MISMATCH",
        "error",
        "An agent's certificate names another site than its Hello. Use the site's own certificate.",
    )
    MISSING_SEQUENCE = "MISSING_SEQUENCE", "error", "A job update came without a sequence number. Upgrade the agent."
    SEQUENCE_OUT_OF_RANGE = (
        "SEQUENCE_OUT_OF_RANGE",
        "error",
        "An agent sent a sequence number above 2^63-1, the largest the protocol admits; the message is refused. "
        "Number updates 1, 2, 3... as site.proto says.",
    )
    SEQUENCE_REUSED = (
        "SEQUENCE_REUSED",
        "error",
        "A job update was numbered at or below the last update the gateway applied for the site but is not one "
        "it applied: the agent's journal went back (a snapshot, a lost disk). The agent sends it again numbered "
        "above Rejection.last_update_sequence.",
    )
    ILLEGAL_SITE_STATE = (
        "ILLEGAL_SITE_STATE",
        "error",
        "A site reported a state only the gateway sets (QUEUED, DISPATCHED, ...), or a returned lease not as "
        "FAILED; the update is refused and the job is not queued again.",
    )
    UNSUPPORTED_MESSAGE = (
        "UNSUPPORTED_MESSAGE",
        "error",
        "The gateway does not know this kind of agent message. Match the agent and gateway versions.",
    )
    INCONSISTENT_CAPACITY = (
        "INCONSISTENT_CAPACITY",
        "error",
        "A site reported a pool with free > offered or offered > total. Fix the agent's pool config.",
    )
    ILLEGAL_TRANSITION = (
        "ILLEGAL_TRANSITION",
        "error",
        "A site reported a state change the job's lifecycle does not allow; the update is refused.",
    )
    JOB_NOT_LEASED_TO_SITE = (
        "JOB_NOT_LEASED_TO_SITE",
        "error",
        "A site reported on a job that is not leased to it; the update is refused.",
    )
    UNKNOWN_RESERVATION = (
        "UNKNOWN_RESERVATION",
        "error",
        "A site answered a reservation this gateway did not make; the reply is refused.",
    )
    RECEIPT_INVALID = (
        "RECEIPT_INVALID",
        "error",
        "A usage receipt does not verify under the site's certificate; the update is refused.",
    )
    TOO_MANY_LOG_STREAMS = (
        "TOO_MANY_LOG_STREAMS",
        "error",
        "A log-stream limit is reached: your tenant's share at that site or at the gateway, the site's own, or the "
        "gateway's (ErrorInfo metadata `limit` names it, `max` gives its size). Close a stream (a `--follow` "
        "you no longer read) or try again shortly.",
    )
    RESOURCE_EXHAUSTED = (
        "RESOURCE_EXHAUSTED",
        "error",
        "A bounded resource is used up for you. The message and ErrorInfo metadata `limit` name it; free some "
        "of it or try again later.",
    )
    TOO_MANY_WATCHES = (
        "TOO_MANY_WATCHES",
        "error",
        "Your share of job watches (WatchJob streams) is in use, or the gateway's whole (metadata `limit`). "
        "Close a watch you no longer read.",
    )
    RATE_LIMITED = (
        "RATE_LIMITED",
        "error",
        "Too many calls (or failed authentications) from your address in a short time. Wait the time a "
        "google.rpc.RetryInfo (and metadata `retry_after_ms`) gives, then try again.",
    )
    BAD_CSR = (
        "BAD_CSR",
        "error",
        "The certificate request cannot be read (a corrupted or unsupported public key). Generate a new key and "
        "CSR (`fedgate agent enroll` does) and send it again.",
    )
    CAPACITY_OUT_OF_BOUNDS = (
        "CAPACITY_OUT_OF_BOUNDS",
        "error",
        "A site's capacity report breaks the contract's bounds (too many pools, too many cards in a pool, or "
        "free > offered > total; site.proto CapacityReport). The report is refused whole; fix the agent's "
        "offers or its backend's inventory.",
    )
    LOG_CREDIT_EXCEEDED = (
        "LOG_CREDIT_EXCEEDED",
        "error",
        "The site sent job output beyond the gateway's flow-control credit (an agent that predates it); the log "
        "stream was ended. Ask for a tail, or have the site upgrade its agent.",
    )
    SITE_DISCONNECTED = (
        "SITE_DISCONNECTED",
        "error",
        "The job's site went away while its logs were read. Run the command again once it is back.",
    )
    SITE_CANNOT_SERVE_LOG = (
        "SITE_CANNOT_SERVE_LOG",
        "error",
        "The site could not read the job's log. The message carries the site's own error.",
    )
    BAD_RESERVATION = (
        "BAD_RESERVATION",
        "error",
        "The reservation request is invalid (window, tenant, size). The message says what to change.",
    )
    RESERVATION_NOT_FOUND = (
        "RESERVATION_NOT_FOUND",
        "error",
        "No such reservation, or not one you may see. Check the id.",
    )
    NO_CAPACITY_FOR_RESERVATION = (
        "NO_CAPACITY_FOR_RESERVATION",
        "error",
        "No set of sites can book the cards for the window. Book fewer cards, another class or another window.",
    )
    RESERVATION_TOO_SMALL = (
        "RESERVATION_TOO_SMALL",
        "error",
        "The job needs more cards than the reservation holds at one site. Submit a smaller job or book more.",
    )
    RESERVATION_OVER = (
        "RESERVATION_OVER",
        "chain",
        "The reservation's window has ended or it was cancelled. Submit the job without it.",
    )
    RESERVATION_NOT_STARTED = (
        "RESERVATION_NOT_STARTED",
        "chain",
        "The reservation's window has not opened yet; the job waits for it.",
    )
    RESERVATION_FULL = (
        "RESERVATION_FULL",
        "chain",
        "The reservation's cards at the site are all used by its other jobs; the job waits for one to end.",
    )
    OUTSIDE_RESERVATION = (
        "OUTSIDE_RESERVATION",
        "chain",
        "The class or site is not part of the job's reservation, so it is not considered.",
    )
    RESERVED = (
        "RESERVED",
        "chain",
        "A site keeps cards for a reservation in this window, so they are not free for other jobs.",
    )
    BOOKED_OUT = "BOOKED_OUT", "chain", "The site's offered cards are booked by other reservations in the window."
    SPLIT_TOO_SMALL = (
        "SPLIT_TOO_SMALL",
        "chain",
        "Even split across the allowed number of sites, the booking does not fit. Allow more sites or book "
        "fewer cards.",
    )
    CONFIRMED = "CONFIRMED", "chain", "Every site confirmed its part of the reservation."
    ACTIVE = "ACTIVE", "chain", "The reservation's window opened; its cards are held for its jobs."
    ENDED = "ENDED", "chain", "The reservation's window closed."
    CANCELLED = "CANCELLED", "chain", "The reservation was cancelled (by whom is in the message)."
    WINDOW_PASSED = (
        "WINDOW_PASSED",
        "chain",
        "The window closed before every site confirmed; the reservation was refused.",
    )
    NO_SITES_LEFT = (
        "NO_SITES_LEFT",
        "chain",
        "Every site the reservation may use refused; it was refused. Book fewer cards or another window.",
    )
    SITE_REFUSED = (
        "SITE_REFUSED",
        "chain",
        "A site refused its part of a reservation or gang; the message carries the site's reason.",
    )
    ADMITTED = (
        "ADMITTED",
        "chain",
        "The policy admitted the job; the message names the rule or default that allowed it.",
    )
    RULE_DENY = (
        "RULE_DENY",
        "chain",
        "A policy rule denies the job; its message says why. Change the job or ask an admin about the rule.",
    )
    RULE_REQUIRE = (
        "RULE_REQUIRE",
        "chain",
        "A policy rule requires something the job lacks (a label, a region). Add it to the job.",
    )
    RESIDENCY = (
        "RESIDENCY",
        "chain",
        "The job's data classification or region does not allow the site or the job. Change the data location"
        " or ask an admin.",
    )
    QUOTA = (
        "QUOTA",
        "chain",
        "The tenant or project holds its concurrent quota of cards; the job waits until some are freed.",
    )
    QUOTA_EXHAUSTED = (
        "QUOTA_EXHAUSTED",
        "chain",
        "The tenant or project has used its card-hours for the period; the job waits for the next period.",
    )
    QUOTA_TOO_SMALL = (
        "QUOTA_TOO_SMALL",
        "chain",
        "The job is larger than the quota could ever hold. Ask for fewer cards or a larger quota.",
    )
    EVALUATION_ERROR = (
        "EVALUATION_ERROR",
        "chain",
        "The policy could not be evaluated for the job, so it was denied. Report it to the federation admin.",
    )
    NONE = "NONE", "chain", "A decision came without a reason (only in policy test tables)."
    NO_SITES = "NO_SITES", "chain", "No site has joined the federation yet; the job waits."
    SITE_OFFLINE = "SITE_OFFLINE", "chain", "The site's agent is not connected, so the site is not considered."
    SITE_DRAINING = (
        "SITE_DRAINING",
        "chain",
        "The site is draining (by its operator or an admin) and takes no new work.",
    )
    SITE_TERMS = (
        "SITE_TERMS",
        "chain",
        "The centre's own terms refuse the job (tenant, project, size, image registry). Ask the centre, or "
        "let the job go elsewhere.",
    )
    NO_MATCHING_POOL = (
        "NO_MATCHING_POOL",
        "chain",
        "The site offers no pool of the class or capability the job asks for.",
    )
    OFFER_TOO_SMALL = "OFFER_TOO_SMALL", "chain", "The site offers fewer cards to the federation than the job needs."
    NO_FREE_CAPACITY = (
        "NO_FREE_CAPACITY",
        "chain",
        "Not enough free cards right now; the job waits (or the agent refused a launch it cannot fit).",
    )
    FRAGMENTED = (
        "FRAGMENTED",
        "chain",
        "Enough cards are free in total but not at one site. Allow a gang across sites (topology.max_sites) or wait.",
    )
    FRAGMENTATION = (
        "FRAGMENTATION",
        "chain",
        "Enough cards are free but not in blocks the gang's per-site minimum allows.",
    )
    NODE_SHAPE = (
        "NODE_SHAPE",
        "chain",
        "Enough cards are free at the site but not as the nodes the job needs (whole free nodes for a job of more "
        "than one node's cards, one node with all its cards otherwise); the message names the free whole nodes "
        "and the job's need. Wait, or ask for fewer cards per node (resources.nodes).",
    )
    FITS = "FITS", "chain", "The site has enough free cards for the job (a candidate, with its score)."
    PLACED = "PLACED", "chain", "The job was placed on the site (best fit)."
    GANG_PLANNED = "GANG_PLANNED", "chain", "No single site fits; the job was planned as a gang across several sites."
    GANG_RESERVED = "GANG_RESERVED", "chain", "Every part of the gang is held; the gang is launching."
    SITE_BACKOFF = "SITE_BACKOFF", "chain", "The site refused or timed out recently and is not asked again yet."
    RESERVE_INTERRUPTED = (
        "RESERVE_INTERRUPTED",
        "chain",
        "The gateway restarted while reserving the gang; the job is queued again.",
    )
    SITE_LEASE_EXPIRED = (
        "SITE_LEASE_EXPIRED",
        "chain",
        "The gateway heard nothing from the job's site for longer than its lease (`site_lease_s`): the attempt is "
        "LOST and the job queued again by its policy. The site's agent stops it on its side within the lease.",
    )
    GATEWAY_SHUTTING_DOWN = (
        "GATEWAY_SHUTTING_DOWN",
        "error",
        "The gateway is stopping (SIGTERM) and takes no new work; retry against it once it is back, or another one.",
    )
    LEASE_RETURNED = (
        "LEASE_RETURNED",
        "chain",
        "The site declined to start the attempt; the job is queued again (the message says why).",
    )
    RESERVATION_HELD = (
        "RESERVATION_HELD",
        "chain",
        "The job holds a reservation of cards so that backfill cannot starve it.",
    )
    BEHIND_RESERVATION = (
        "BEHIND_RESERVATION",
        "chain",
        "The cards are held for a larger job ahead in the queue; this job waits behind it.",
    )
    BACKFILLED = (
        "BACKFILLED",
        "chain",
        "The job runs in cards held for a larger job, and ends before that job needs them.",
    )
    HELD_FOR_PREEMPTOR = (
        "HELD_FOR_PREEMPTOR",
        "chain",
        "The cards are kept for a more urgent job that is preempting others.",
    )
    WAITING_FOR_PREEMPTION = (
        "WAITING_FOR_PREEMPTION",
        "chain",
        "Lower-priority jobs are being preempted to make room for this one.",
    )
    AGENT_ERROR = "AGENT_ERROR", "error", "The agent failed for a reason it did not classify further. Read the message."
    LAUNCH_REFUSED = (
        "LAUNCH_REFUSED",
        "error",
        "The agent will not start this attempt; it reports it FAILED with the message.",
    )
    BACKEND_ERROR = (
        "BACKEND_ERROR",
        "error",
        "The site's backend (local, Slurm, Kubernetes) could not start, watch or stop a job. Check the backend.",
    )
    LAUNCH_FAILED = (
        "LAUNCH_FAILED",
        "error",
        "The backend could not start the job's command (empty command, missing executable). Fix the job's run.",
    )
    KUBERNETES_API = (
        "KUBERNETES_API",
        "error",
        "The Kubernetes API refused or failed a call. Check the agent's kubeconfig and RBAC.",
    )
    SLURM_TIMEOUT = "SLURM_TIMEOUT", "error", "A Slurm command did not answer in time. Check slurmctld."
    PROTOCOL_ERROR = (
        "PROTOCOL_ERROR",
        "error",
        "The gateway broke the site protocol. Match the agent and gateway versions.",
    )
    GATEWAY_REFUSED = (
        "GATEWAY_REFUSED",
        "error",
        "The gateway refused this agent for good (revoked or unknown). Re-enrol the site.",
    )
    GATEWAY_UNREACHABLE = (
        "GATEWAY_UNREACHABLE",
        "error",
        "The gateway could not be reached. Check the address, the network and the gateway.",
    )
    CA_FINGERPRINT_MISMATCH = (
        "CA_FINGERPRINT_MISMATCH",
        "error",
        "The gateway did not present the CA the operator pinned; nothing was sent. Check the fingerprint.",
    )
    BAD_CREDENTIALS = (
        "BAD_CREDENTIALS",
        "error",
        "A key, certificate or CA bundle is unusable. Re-enrol, or fix the files the agent config names.",
    )
    ENROLLMENT_REFUSED = (
        "ENROLLMENT_REFUSED",
        "error",
        "The gateway refused to enrol or renew; the message carries the gateway's reason.",
    )
    BAD_USAGE = (
        "BAD_USAGE",
        "error",
        "An agent command was asked for something it cannot do as given. The message says what to change.",
    )
    BAD_FINGERPRINT = (
        "BAD_FINGERPRINT",
        "error",
        "The CA fingerprint given is not a SHA-256 fingerprint. Copy it again from the admin.",
    )
    CREDENTIALS_EXIST = (
        "CREDENTIALS_EXIST",
        "error",
        "`fedgate agent enroll` would overwrite the site's certificate. Pass --force to replace it.",
    )
    TASK_DIED = (
        "TASK_DIED",
        "error",
        "A task that must run as long as the process (the agent's link to the gateway, a backend's watch) ended; "
        "the process drained and exited 1 so that its supervisor restarts it. The log line before says why.",
    )
    # Codes given before they were members (found when the contract's enum was made from this one): new codes go
    # at the end, so that each keeps its number in fedgate.v1.ReasonCode.
    UNKNOWN_TENANT = (
        "UNKNOWN_TENANT",
        "error",
        "The job or reservation names a tenant the federation policy does not define (the message lists the known "
        "ones). Fix spec.tenant.",
    )
    UNKNOWN_PROJECT = (
        "UNKNOWN_PROJECT",
        "error",
        "The job or reservation names a project its tenant does not have (the message lists the known ones). Fix "
        "spec.project.",
    )
    UNKNOWN_PRIORITY_CLASS = (
        "UNKNOWN_PRIORITY_CLASS",
        "error",
        "The job names a priority class the policy does not define (the message lists them). Fix "
        "spec.priority_class, or leave it empty for the default.",
    )
    NO_CLASS_CAN_SERVE = (
        "NO_CLASS_CAN_SERVE",
        "error",
        "No accelerator class of the catalogue meets the job's request with a run for its software stack. Add a "
        "run for the class's stack, or relax the capability.",
    )
    ACCELERATOR_NOT_ALLOWED = (
        "ACCELERATOR_NOT_ALLOWED",
        "error",
        "The federation's access policy does not let the tenant use the classes that could serve the job. Ask "
        "for another class, or ask an admin for access.",
    )
    SITE_REFUSED_RESERVE = (
        "SITE_REFUSED_RESERVE",
        "chain",
        "A site refused to hold a gang part's cards (the message carries its reason); the gang is released and "
        "the job queued again, that site backed off.",
    )
    RESERVE_TIMEOUT = (
        "RESERVE_TIMEOUT",
        "chain",
        "A site did not answer a gang part's hold in time; the gang is released and the job queued again.",
    )
    TOKEN_MALFORMED = (
        "TOKEN_MALFORMED",
        "error",
        "The bearer token cannot be read (not three base64url JSON parts, a claim missing or of the wrong type). "
        "Send the token exactly as IssueToken gave it.",
    )
    TOKEN_ALGORITHM = (
        "TOKEN_ALGORITHM",
        "error",
        "The bearer token is signed with an algorithm other than EdDSA, the only one accepted. Use a token this "
        "gateway issued.",
    )
    TOKEN_SIGNATURE = (
        "TOKEN_SIGNATURE",
        "error",
        "The bearer token's signature does not verify (tampered, or issued by another gateway). Ask for a new token.",
    )
    TOKEN_AUDIENCE = (
        "TOKEN_AUDIENCE",
        "error",
        "The bearer token was issued for another audience (another federation or gateway). Use one issued for this.",
    )
    TOKEN_EXPIRED = "TOKEN_EXPIRED", "error", "The bearer token has expired. Ask an admin for a new one."
    TOKEN_NOT_YET_VALID = (
        "TOKEN_NOT_YET_VALID",
        "error",
        "The bearer token is not valid yet (issued in the future: a clock out of step). Check the clocks.",
    )
    TOKEN_LIFETIME = (
        "TOKEN_LIFETIME",
        "error",
        "The bearer token lives longer than this gateway accepts. Ask for one with a shorter ttl.",
    )
    TOKEN_SUBJECT = (
        "TOKEN_SUBJECT",
        "error",
        "The bearer token speaks for something other than a tenant's user; tokens are for machine users only.",
    )
    SITE_STREAM_TAKEN_OVER = (
        "SITE_STREAM_TAKEN_OVER",
        "error",
        "Another agent connected as this site and took over its stream (last one wins). Run one agent per "
        "site: stop the other one, or give each agent its own site and certificate. The displaced agent backs"
        " off, growing the wait each time.",
    )
    TLS_CLIENT_CERT_EXPIRED = (
        "TLS_CLIENT_CERT_EXPIRED",
        "error",
        "Your certificate is past its end date, so the gateway refuses the TLS handshake. Ask your federation"
        " admin for a new one; renew before expiry next time (`fedgate creds renew`).",
    )
    TLS_SERVER_CERT_EXPIRED = (
        "TLS_SERVER_CERT_EXPIRED",
        "error",
        "The gateway presents an expired certificate. Its operator issues a new one (`fedgate ca issue "
        "--server`) and restarts it.",
    )
    TLS_CERT_NOT_YET_VALID = (
        "TLS_CERT_NOT_YET_VALID",
        "error",
        "A certificate in the handshake (yours or the gateway's) is not valid yet. Check the clocks of both machines.",
    )
    TLS_UNKNOWN_CA = (
        "TLS_UNKNOWN_CA",
        "error",
        "The gateway's certificate is not issued by the CA you trust (ca.pem or --ca): another federation, or"
        " the wrong CA file. Get the federation's ca.pem from its admin.",
    )
    TLS_HOSTNAME_MISMATCH = (
        "TLS_HOSTNAME_MISMATCH",
        "error",
        "The gateway's certificate does not name the host you dialled. Dial a name it has, or reissue it with"
        " `fedgate ca issue --server --host NAME`.",
    )
    TLS_CLIENT_CERT_REQUIRED = (
        "TLS_CLIENT_CERT_REQUIRED",
        "error",
        "The address dialled is the gateway's mTLS port, which wants a client certificate. Send a token to "
        "its public port (`public_listen`), or use --creds.",
    )
    TLS_CLIENT_CERT_REFUSED = (
        "TLS_CLIENT_CERT_REFUSED",
        "error",
        "The gateway refused your certificate in the TLS handshake (expired, revoked, or another "
        "federation's). Ask your admin for a new one.",
    )
    TLS_VERIFY_FAILED = (
        "TLS_VERIFY_FAILED",
        "error",
        "The gateway's certificate fails verification for another reason (the message says which), or the CA "
        "bundle holds no readable certificate.",
    )
    JOB_ENDED = (
        "JOB_ENDED",
        "chain",
        "The job has ended; the message says how (its exit, who cancelled it, why it failed). It replaces the "
        "reasons it waited for, which no longer hold.",
    )
    UNKNOWN_DATASET = (
        "UNKNOWN_DATASET",
        "error",
        "The job names a dataset the policy's `network.datasets` does not list (the message lists them). Fix "
        "spec.dataset, or leave it empty.",
    )
    GANG_LINKS = (
        "GANG_LINKS",
        "chain",
        "The gang's parts are on these sites because they are the best-connected set of that size that fits "
        "(the policy's `network.links`); the message gives the weakest link in the set and the next best set's.",
    )
    GANG_THIN_LINK = (
        "GANG_THIN_LINK",
        "chain",
        "The gang runs, but its parts are joined by a thin link (below 25 Gb/s, above 20 ms, or none stated): "
        "its collectives will be slow. Wait for better-linked sites to free up, or ask to add the link's figures.",
    )
    DATASET_TRANSFER = (
        "DATASET_TRANSFER",
        "chain",
        "The job names a dataset: the site was chosen counting the estimated time to copy the dataset there "
        "(0 at the dataset's own site). The message gives the estimate and what the nearer sites lacked.",
    )


class ReasonStage(enum.StrEnum):
    """The stage of a reason chain that gave a reason (`Reason.stage`). `doc` says what the stage decides."""

    _value_: str
    doc: str

    def __new__(cls, stage: str, doc: str) -> ReasonStage:
        member = str.__new__(cls, stage)
        member._value_ = stage
        member.doc = doc
        return member

    POLICY = "policy", "The federation policy: admission, the job's rules, quotas and residency."
    ACCESS = "access", "Who may act: membership, roles and the tenant of the caller (a policy test case)."
    OFFERS = "offers", "What the sites offer: connected, not draining, a pool of the class, the centre's own terms."
    CAPACITY = "capacity", "Free cards now: fit, node shape, fragmentation, backfill and holds for preemption."
    DISPATCH = "dispatch", "The gateway's launch of an attempt, or of a gang's parts, at the chosen sites."
    SITE = "site", "A site's own word: confirmed, refused, returned the lease, or went silent past its lease."
    RESERVATION = "reservation", "An advance reservation: its window, its cards and its booking rounds."
    LISTING = "listing", "How a job is shown in a listing (e.g. listed without its command, too large to list)."


_TITLES: dict[Kind, str] = {
    "error": "Refusals: errors of calls, commands and launches",
    "chain": "Reason chains: why a job or reservation waits, goes where it goes, or was refused",
}


def render_markdown() -> str:
    """`docs/reasons.md`: every code, where it is seen, what it means and what to do."""
    lines = [
        "# Reason codes",
        "",
        "Every refusal and every step of a job's or reservation's reason chain carries one of these stable codes:",
        "in the `reason` of a gRPC error's `google.rpc.ErrorInfo` (domain `fedgate.io`), in `fedgate job explain`",
        "and `fedgate job get -o json`, in the agent's errors and in the FAILED update of a refused launch.",
        "Scripts may rely on them; messages are for people and may change.",
        "",
        "Generated from `fedgate.common.reasons.ReasonCode` by `python -m fedgate.common.reasons`; do not edit.",
    ]
    for kind, title in _TITLES.items():
        lines += ["", f"## {title}", "", "| code | meaning and what to do |", "|---|---|"]
        lines += [f"| `{code.value}` | {code.doc} |" for code in ReasonCode if code.kind == kind]
    return "\n".join(lines) + "\n"


_PROTO_HEAD = """\
// Generated from fedgate.common.reasons (ReasonCode, ReasonStage) by `python -m fedgate.common.reasons --proto`;
// do not edit. A code's number is its position there: new codes are added at the end.

syntax = "proto3";

package fedgate.v1;

option go_package = "github.com/fedgate/fedgate/gen/go/fedgate/v1;fedgatev1";
option java_multiple_files = true;
option java_package = "io.fedgate.v1";
"""


def _comment(text: str, indent: str = "", width: int = 116) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(indent) + 3 + len(line) + 1 + len(word) > width:
            lines.append(f"{indent}// {line}")
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, f"{indent}// {line}"]


def render_proto() -> str:
    """`proto/fedgate/v1/reason.proto`: the two enums, each value commented with its doc. ReasonCode's values are
    named as the codes themselves (as google.api.ErrorReason's are), so that a value's name is the string in
    ErrorInfo.reason; ReasonStage's carry the enum's prefix, as buf's lint asks."""
    lines = _PROTO_HEAD.splitlines()
    lines += [""]
    lines += _comment(
        "A stable reason code: the `reason` of a refusal's google.rpc.ErrorInfo (domain fedgate.io, the value's "
        "name), of a BadRequest or PreconditionFailure violation, and the code of each step of a reason chain "
        "(Reason.code). docs/reasons.md lists them too. A client that meets a number it does not know (a newer "
        "gateway) reads it as REASON_CODE_UNSPECIFIED and keeps the message."
    )
    lines += ["enum ReasonCode {", "  // Not said (a reason code this side does not know)."]
    lines += ["  REASON_CODE_UNSPECIFIED = 0;"]
    for number, code in enumerate(ReasonCode, start=1):
        where = "A refusal" if code.kind == "error" else "A reason chain's step"
        lines += _comment(f"{where}. {code.doc}", "  ")
        lines += [f"  {code.name} = {number};"]
    lines += ["}", ""]
    lines += _comment("The stage of a reason chain that gave a reason (Reason.stage).")
    lines += ["enum ReasonStage {", "  // Not said (a stage this side does not know)."]
    lines += ["  REASON_STAGE_UNSPECIFIED = 0;"]
    for number, stage in enumerate(ReasonStage, start=1):
        lines += _comment(stage.doc, "  ")
        lines += [f"  REASON_STAGE_{stage.name} = {number};"]
    lines += ["}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(render_proto() if sys.argv[1:] == ["--proto"] else render_markdown(), end="")
