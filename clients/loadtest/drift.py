"""Drift injection for monitoring tests: shift or rescale chosen numeric features of the rows.

``--drift 'V14:shift=2.5'`` adds 2.5 to V14, ``--drift 'Amount:scale=3'`` multiplies Amount by 3,
``--drift 'V4:scale=2,shift=1'`` does both (scale first: ``x * 2 + 1``). The drifted rows are
the same rows, so a monitor sees a clean change of distribution, not a change of sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .workload import Workload


@dataclass(frozen=True)
class Drift:
    """``x -> x * scale + shift`` on one feature."""

    feature: str
    shift: float = 0.0
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_drift(text: str) -> Drift:
    """``FEATURE:shift=X``, ``FEATURE:scale=X`` or both, comma-separated."""
    name, sep, ops = text.rpartition(":")
    if not sep or not name.strip() or not ops.strip():
        raise ValueError(f"--drift {text!r}: expected FEATURE:shift=X or FEATURE:scale=X")
    values = {"shift": 0.0, "scale": 1.0}
    for op in ops.split(","):
        key, eq, raw = op.partition("=")
        key = key.strip()
        if key not in values or not eq:
            raise ValueError(f"--drift {text!r}: '{op.strip()}' is not shift=X or scale=X")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"--drift {text!r}: '{raw.strip()}' is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"--drift {text!r}: the value must be finite")
        values[key] = value
    return Drift(name.strip(), shift=values["shift"], scale=values["scale"])


def apply_drift(work: Workload, drifts: Sequence[Drift]) -> Workload:
    """A copy of ``work`` with each drift applied to its (numeric) feature; raises ValueError
    naming the feature if it is absent or categorical."""
    names = [f.name for f in work.features]
    columns = list(work.columns)
    for d in drifts:
        if d.feature not in names:
            shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
            raise ValueError(f"--drift: no feature '{d.feature}' in the rows; they have {shown}")
        i = names.index(d.feature)
        if not work.features[i].numeric:
            raise ValueError(
                f"--drift: feature '{d.feature}' is categorical (BYTES); only numeric ones drift"
            )
        columns[i] = np.asarray(columns[i], dtype=np.float64) * d.scale + d.shift
    return Workload(list(work.features), columns)
