"""Files fedgate ships beside its code: the default policies and the example jobs the demo submits.

Owns: finding a shipped folder wherever fedgate runs. In a source checkout (or an editable install of one) it is
the top-level folder of the repository; in an installed wheel or the image it is the copy the wheel carries as
package data (`proto/fedgate/policies` and `proto/fedgate/examples` are links to the top-level folders, resolved
when a wheel is built; see pyproject.toml).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]
"""The repository root when this module runs from a source checkout."""


def shipped(folder: str) -> Path:
    """The shipped top-level `folder` ("policies" or "examples"): the checkout's, else the installed copy."""
    checkout = CHECKOUT / folder
    if checkout.is_dir() and (CHECKOUT / "pyproject.toml").is_file():
        return checkout
    return Path(str(resources.files("fedgate") / folder))
