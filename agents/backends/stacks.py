"""Which environment variable confines a process to its devices, per software stack.

Owns: the stack -> visible-devices variable table. Container and cluster backends usually let a device
plugin do this instead; the local backend sets the variable itself.
"""

from __future__ import annotations

from collections.abc import Sequence

VISIBLE_DEVICES_VARIABLE: dict[str, str] = {
    "cuda": "CUDA_VISIBLE_DEVICES",
    "cann": "ASCEND_RT_VISIBLE_DEVICES",
    "dtk": "HIP_VISIBLE_DEVICES",
    "neuware": "MLU_VISIBLE_DEVICES",
    "musa": "MUSA_VISIBLE_DEVICES",
    "xpu": "XPU_VISIBLE_DEVICES",
    "kunlunxin": "XPU_VISIBLE_DEVICES",
}
"""Stacks not listed (or empty, i.e. CPU-only) get no variable."""


def visible_devices_env(stack: str, devices: Sequence[int]) -> dict[str, str]:
    """The variable (if any) that shows only `devices` to a `stack` process: CUDA_VISIBLE_DEVICES=0,1."""
    variable = VISIBLE_DEVICES_VARIABLE.get(stack.strip().lower())
    if variable is None:
        return {}
    return {variable: ",".join(str(d) for d in devices)}
