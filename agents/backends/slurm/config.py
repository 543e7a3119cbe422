"""The `slurm` backend's options: what an operator may write under `backend:` and the built-in gres table.

Owns: the `SlurmOptions` dataclass, reading it from the config's `backend:` section with errors that name
file and line, and `DEFAULT_GRES_CLASSES`, the Slurm gres type -> catalogue class table (it must agree with
the `slurm_gres` names of policies/accelerators.yaml; a unit test checks that). It does not talk to Slurm
(`agents.backends.slurm.backend`) and does not read the catalogue file: an agent image carries no policies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from fedgate.common.sections import Section

DEFAULT_GRES_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "h100": "nvidia-h100",
        "h200": "nvidia-h200",
        "h20": "nvidia-h20",
        "a100": "nvidia-a100",
        "a800": "nvidia-a800",
        "l20": "nvidia-l20",
        "ascend910b": "ascend-910b",
        "910b": "ascend-910b",
        "ascend910c": "ascend-910c",
        "910c": "ascend-910c",
        "k100": "hygon-k100",
        "dcu": "hygon-k100",
        "mlu590": "cambricon-mlu590",
        "mlu": "cambricon-mlu590",
        "p800": "kunlunxin-p800",
        "xpu": "kunlunxin-p800",
        "s4000": "mthreads-s4000",
        "mtt": "mthreads-s4000",
        "c500": "metax-c500",
        "metax": "metax-c500",
        "bi-v150": "iluvatar-bi-v150",
        "iluvatar": "iluvatar-bi-v150",
        "s60": "enflame-s60",
        "gcu": "enflame-s60",
    }
)
"""Typed gres (`gpu:h100:8`, `npu:910b:8`) -> catalogue class, keyed by the gres *type* in lower case.
Operators add or override entries with the `gres:` option; untyped gres (`gpu:8`) name no class."""

# Slurm's own names for partitions and accounts: letters, digits and a few marks, never a shell character.
_SLURM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GRES_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CLASS_ID = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True)
class SlurmOptions:
    """The validated options of a `type: slurm` backend."""

    partition: str
    """The partition every job is submitted to and whose nodes are counted as capacity."""
    account: str = ""
    """Slurm account charged for the federation's jobs (`sbatch --account`); empty = the user's default."""
    slurm_conf: Path | None = None
    """slurm.conf to use, exported as SLURM_CONF to every Slurm command; None = Slurm's own default."""
    gres_classes: Mapping[str, str] = field(default_factory=lambda: DEFAULT_GRES_CLASSES)
    """Gres type (lower case) -> catalogue class: the built-in table with the operator's `gres:` on top."""
    poll_interval_s: float = 2.0
    """Seconds between two polls of squeue/sacct for all of this agent's jobs."""
    command_timeout_s: float = 30.0
    """Seconds a Slurm command may take before it counts as failed (slurmctld unreachable)."""


def read_slurm_options(section: Section, base: Path) -> SlurmOptions:
    """Read the slurm keys of the `backend:` section; errors name file and line and say what to write."""
    partition = section.text("partition")
    if not _SLURM_NAME.fullmatch(partition):
        section.fail(f"backend.partition {partition!r} is not a Slurm partition name like 'gpu'", "partition")
    account = section.text("account", "")
    if account and not _SLURM_NAME.fullmatch(account):
        section.fail(f"backend.account {account!r} is not a Slurm account name like 'proj-ai'", "account")
    conf_text = section.text("slurm_conf", "")
    slurm_conf = None
    if conf_text:
        slurm_conf = Path(conf_text).expanduser()
        slurm_conf = slurm_conf if slurm_conf.is_absolute() else (base / slurm_conf)
    return SlurmOptions(
        partition=partition,
        account=account,
        slurm_conf=slurm_conf,
        gres_classes=_gres_classes(section),
        poll_interval_s=section.number("poll_interval_s", 2.0, positive=True),
        command_timeout_s=section.number("command_timeout_s", 30.0, positive=True),
    )


def _gres_classes(section: Section) -> Mapping[str, str]:
    extra = section.string_map("gres")
    table = dict(DEFAULT_GRES_CLASSES)
    for gres_type, accelerator_class in extra.items():
        if not _GRES_TYPE.fullmatch(gres_type):
            section.fail(f"backend.gres key {gres_type!r} is not a gres type like 'h100' (from gpu:h100:8)", "gres")
        if not _CLASS_ID.fullmatch(accelerator_class):
            section.fail(
                f"backend.gres.{gres_type} is {accelerator_class!r}, not a catalogue class like 'nvidia-h100'", "gres"
            )
        table[gres_type.lower()] = accelerator_class
    return MappingProxyType(table)
