"""Reading what Slurm's commands print: gres strings, sinfo node rows, squeue rows, sacct rows, scontrol
job records, sbatch --parsable; and turning them into capacity per class and exit statuses.

Owns: the exact formats the slurm backend asks for (the FORMAT constants here) and their parsing, the
set of job states that mean "ended", and the mapping of a Slurm state + ExitCode to an `ExitStatus`. Pure
functions over text: no subprocesses, no clock. It does not choose which command to run when
(`agents.backends.slurm.watch`, `agents.backends.slurm.backend`).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agents.backends.base import ExitStatus

SINFO_NODE_FORMAT = "%N|%G|%T"
"""`sinfo --Node --format`: node name, configured gres, long state."""
SQUEUE_FORMAT = "%i|%j|%T"
"""`squeue --format`: job id, job name, long state."""
SACCT_FIELDS = "JobIDRaw,JobName,State,ExitCode"
"""`sacct --parsable2 --format`."""

ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)
"""Job states after which nothing of the job runs any more. COMPLETING is not one: processes may remain."""

_USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned", "reserved"})
# sinfo marks a node's condition with one trailing character: `*` not responding, `~` powered off, `#`
# powering up, `%` powering down, `$` maintenance, `@` reboot pending, `!` ..., `-` planned by backfill.
_STATE_FLAGS = "*~#%$@!^-"


@dataclass(frozen=True)
class Gres:
    """One generic resource of a node: `gpu:h100:8` is Gres("gpu", "h100", 8)."""

    name: str
    type: str
    """Empty for untyped gres (`gpu:8`)."""
    count: int


@dataclass(frozen=True)
class NodeRow:
    name: str
    gres: tuple[Gres, ...]
    state: str
    """sinfo's long state with its condition flag, e.g. `idle`, `mixed`, `down*`, `drained`."""

    @property
    def usable(self) -> bool:
        """True when the node can run new jobs now (not down, drained, failing or unresponsive)."""
        if self.state.endswith("*"):
            return False
        return self.state.rstrip(_STATE_FLAGS).lower() in _USABLE_NODE_STATES


@dataclass(frozen=True)
class ClassCapacity:
    """What a partition has of one catalogue class, counted over its usable nodes."""

    accelerator_class: str
    gres_name: str
    gres_type: str
    cards: int
    max_per_node: int

    def gres_request(self, cards: int) -> str:
        """The `--gres` value for `cards` of this class, e.g. `gpu:h100:2`."""
        return f"{self.gres_name}:{self.gres_type}:{cards}"


@dataclass(frozen=True)
class JobRow:
    """One job as squeue, sacct or scontrol show it."""

    slurm_id: str
    name: str
    state: str
    """Upper-case base state, e.g. RUNNING, CANCELLED (sacct's `CANCELLED by 0` is cut to CANCELLED)."""
    exit_code: int = 0
    signal_number: int = 0

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def parse_gres(text: str) -> tuple[Gres, ...]:
    """`gpu:h100:4(S:0-1),gpu:a100:2,mps:200` -> Gres entries; `(null)` and blanks give ()."""
    text = text.strip()
    if not text or text == "(null)":
        return ()
    result = []
    for item in _split_outside_parentheses(text):
        parts = item.split("(", 1)[0].strip().split(":")
        if not parts[0]:
            continue
        if len(parts) == 1:
            result.append(Gres(parts[0], "", 1))
        elif len(parts) == 2:
            count = _count(parts[1])
            result.append(Gres(parts[0], "", count) if count is not None else Gres(parts[0], parts[1], 1))
        else:
            count = _count(parts[-1])
            if count is not None:
                result.append(Gres(parts[0], ":".join(parts[1:-1]), count))
    return tuple(result)


def parse_sinfo_nodes(text: str) -> list[NodeRow]:
    """Rows of `sinfo --noheader --Node --format=SINFO_NODE_FORMAT`; a node listed twice counts once."""
    nodes: dict[str, NodeRow] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, gres, state = [*line.split("|", 2), "", ""][:3]
        nodes.setdefault(name.strip(), NodeRow(name.strip(), parse_gres(gres), state.strip()))
    return list(nodes.values())


def partition_capacity(nodes: Iterable[NodeRow], gres_classes: Mapping[str, str]) -> dict[str, ClassCapacity]:
    """Cards per catalogue class over the usable nodes. When two gres kinds map to one class, the one with
    more cards wins (a job can ask for only one kind)."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for node in nodes:
        if not node.usable:
            continue
        for gres in node.gres:
            accelerator_class = gres_classes.get(gres.type.lower()) if gres.type else None
            if accelerator_class is None or gres.count <= 0:
                continue
            totals.setdefault((accelerator_class, gres.name, gres.type), []).append(gres.count)
    result: dict[str, ClassCapacity] = {}
    for (accelerator_class, name, gres_type), counts in sorted(totals.items()):
        found = ClassCapacity(accelerator_class, name, gres_type, sum(counts), max(counts))
        known = result.get(accelerator_class)
        if known is None or found.cards > known.cards:
            result[accelerator_class] = found
    return result


def unmapped_gres(nodes: Iterable[NodeRow], gres_classes: Mapping[str, str]) -> list[str]:
    """Typed gres the table has no class for (`gpu:v100`), so an operator can add them to `gres:`."""
    seen = {f"{g.name}:{g.type}" for n in nodes for g in n.gres if g.type and g.type.lower() not in gres_classes}
    return sorted(seen)


def parse_squeue(text: str) -> list[JobRow]:
    """Rows of `squeue --noheader --format=SQUEUE_FORMAT`."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0]:
            rows.append(JobRow(parts[0], "|".join(parts[1:-1]), _base_state(parts[-1])))
    return rows


def parse_sacct(text: str) -> list[JobRow]:
    """Rows of `sacct --noheader --parsable2 --allocations --format=SACCT_FIELDS` (job steps are skipped)."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0] or "." in parts[0]:
            continue
        code, signum = parse_exit_code(parts[-1])
        rows.append(JobRow(parts[0], "|".join(parts[1:-2]), _base_state(parts[-2]), code, signum))
    return rows


def parse_scontrol_job(text: str) -> JobRow | None:
    """`scontrol --oneliner show job <id>` -> its row; None when the output holds no job record."""
    fields = parse_key_values(text)
    if "JobId" not in fields:
        return None
    code, signum = parse_exit_code(fields.get("ExitCode", "0:0"))
    return JobRow(fields["JobId"], fields.get("JobName", ""), _base_state(fields.get("JobState", "")), code, signum)


def parse_key_values(text: str) -> dict[str, str]:
    """`A=1 B=two words C=3` -> {A: 1, B: two words, C: 3}: a value runs until the next ` Key=`."""
    matches = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=", text))
    fields: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields.setdefault(match.group(1), text[match.end() : end].strip())
    return fields


def parse_sbatch_parsable(text: str) -> str:
    """`sbatch --parsable` prints `<id>` or `<id>;<cluster>`; the id, or ValueError if there is none."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    slurm_id = first.split(";", 1)[0].strip()
    if not slurm_id.isdigit():
        raise ValueError(f"sbatch printed {text.strip()!r} where a job id was expected")
    return slurm_id


def parse_exit_code(text: str) -> tuple[int, int]:
    """Slurm's ExitCode `<code>:<signal>` -> (code, signal); unreadable parts count as 0."""
    code, _, signum = text.strip().partition(":")
    return (int(code) if code.isdigit() else 0, int(signum) if signum.isdigit() else 0)


def exit_status(row: JobRow) -> ExitStatus:
    """How an ended job ended, in the agent's terms (128+N for signal N, as the shell writes it).

    A state that failed without any code (FAILED 0:0, NODE_FAIL, a job cancelled before it started) still
    must not read as success: cancelled jobs count as killed by SIGTERM, the rest as exit code 1."""
    if row.signal_number:
        return ExitStatus(exit_code=128 + row.signal_number, signal_number=row.signal_number)
    if row.state == "COMPLETED" or row.exit_code:
        return ExitStatus(exit_code=row.exit_code)
    if row.state in {"CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED"}:
        return ExitStatus(exit_code=128 + signal.SIGTERM, signal_number=signal.SIGTERM)
    return ExitStatus(exit_code=1)


def _base_state(text: str) -> str:
    # sacct writes `CANCELLED by 1000`; squeue and scontrol write the bare state.
    words = text.strip().split()
    return words[0].upper().rstrip("+") if words else ""


def _count(text: str) -> int | None:
    text = text.strip()
    multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1) if text else 1
    digits = text[:-1] if multiplier != 1 else text
    return int(digits) * multiplier if digits.isdigit() else None


def _split_outside_parentheses(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items
