"""Production variants: several versions of one model share its production traffic by weight
(SageMaker's ProductionVariants), e.g. 90% to version 3 and a 10% canary to version 4.

A *split* is a tuple of ``Variant``, the primary first: the version holding the registry's
``production`` stage (what a canary is measured against, what ``rollback`` and the server's
fallback refer to), then the others in version order. Weights are percentages of production
traffic summing to 100, normalized when a split is made (``9:1`` is ``90:10``) and rounded to
1e-9, so one split has one spelling (``to_json``): the registry's history compares splits by it.

Everything here is a pure value function shared by the registry (``registry.py``), the server's
reader (``stages.py``), config.json (``config.py``) and the CLI; the routing itself (hashing a
routing key to a variant) is the server's (``server/models/variants.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from onyxserve.errors import OnyxserveError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")  # starts with a letter: never read as a version
SPEC_FORM = "[NAME=]VERSION:WEIGHT"


class VariantError(OnyxserveError, ValueError):
    """A split that cannot be used; the message names the variant, version or weight at fault."""


@dataclass(frozen=True)
class Variant:
    name: str  # what a request's ``variant`` parameter and the ``variant`` metric label say
    version: str
    weight: float  # percent of the requests without a version

    def __str__(self) -> str:
        return f"{self.name}={self.version}:{_number(self.weight)}%"


Split = tuple[Variant, ...]


def default_name(version: str | int) -> str:
    return f"v{version}"


def solo(version: str | int) -> Split:
    """One version taking all production traffic: what a plain production stage is."""
    return (Variant(default_name(version), str(version), 100.0),)


def is_solo(split: Sequence[Variant]) -> bool:
    """The version alone under its default name (the registry stores no split for it)."""
    return len(split) == 1 and split[0].name == default_name(split[0].version)


def _number(weight: float) -> str:
    return f"{weight:.9g}"


def _version(value: object, where: str) -> str:
    text = str(value).strip()
    if not text.isdigit() or int(text) <= 0:
        raise VariantError(f"{where}: version {value!r} is not a positive whole number")
    return str(int(text))


def _weight(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise VariantError(f"{where}: weight {value!r} is not a number")
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VariantError(f"{where}: weight {value!r} is not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise VariantError(f"{where}: weight {value!r} must be a finite number >= 0")
    return weight


def make_split(
    entries: Iterable[tuple[str | None, str | int, float]], *, primary: str | int | None = None, where: str = "split"
) -> Split:
    """A checked, normalized split from (name or None, version, weight) entries. The primary is
    ``primary`` when it is one of the versions (the production version keeps its role while
    weights move), else the heaviest entry (the first of equals). Refuses an empty split, a
    repeated name or version, a bad name, a weight that is negative or not a number, and weights
    that do not sum to a positive number."""
    rows: list[tuple[str, str, float]] = []
    for i, (name, version, weight) in enumerate(entries):
        at = f"{where}: variant {i + 1}"
        v = _version(version, at)
        label = default_name(v) if name in (None, "") else str(name)
        if not NAME.fullmatch(label):
            raise VariantError(
                f"{at}: name {label!r} must start with a letter and hold up to 64 letters, digits, '_', '.', '-'"
            )
        rows.append((label, v, _weight(weight, f"{at} ({label})")))
    if not rows:
        raise VariantError(f"{where}: no variants")
    for index, what in ((1, "version"), (0, "name")):
        seen: set[str] = set()
        for row in rows:
            if row[index] in seen:
                raise VariantError(f"{where}: {what} {row[index]!r} appears twice; each variant is one version")
            seen.add(row[index])
    total = sum(w for _, _, w in rows)
    if not total > 0:
        raise VariantError(f"{where}: weights sum to {_number(total)}; they must sum to a positive number")
    wanted = None if primary is None else str(primary)
    first = next((r for r in rows if r[1] == wanted), None) or max(rows, key=lambda r: r[2])
    rest = sorted((r for r in rows if r is not first), key=lambda r: int(r[1]))
    return tuple(Variant(n, v, round(w * 100.0 / total, 9)) for n, v, w in (first, *rest))


def parse_spec(text: str) -> tuple[str | None, str, float]:
    """One ``[NAME=]VERSION:WEIGHT`` argument, e.g. ``4:10`` or ``canary=4:10``."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = None, text
    version, colon, weight = rest.partition(":")
    if not colon:
        raise VariantError(f"variant {text!r}: write it as {SPEC_FORM}, e.g. 4:10 or canary=4:10")
    return name, _version(version, f"variant {text!r}"), _weight(weight, f"variant {text!r}")


def with_canary(split: Split, version: str | int, percent: float, name: str | None = None) -> Split:
    """``split`` with ``version`` taking ``percent`` of production traffic and the other
    variants sharing the rest in their present proportions; the primary stays primary. A
    version already in the split keeps its name unless ``name`` is given."""
    v = _version(version, "canary")
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        raise VariantError(f"canary: {percent!r} is not a percentage") from None
    if not 0 < percent < 100:  # NaN fails this too
        raise VariantError(f"canary: {_number(percent)}% must be above 0 and below 100")
    if v == split[0].version:
        raise VariantError(f"canary: version {v} is the production version already; name another version")
    current = next((x for x in split if x.version == v), None)
    label = name or (current.name if current is not None else default_name(v))
    others = [x for x in split if x.version != v]
    rest = sum(x.weight for x in others)
    entries = [
        (x.name, x.version, (100.0 - percent) * (x.weight / rest if rest > 0 else (1.0 if i == 0 else 0.0)))
        for i, x in enumerate(others)
    ]
    return make_split([*entries, (label, v, percent)], primary=split[0].version, where="canary")


def without(split: Split, version: str | int) -> Split | None:
    """``split`` without ``version`` (its share spread over the others in proportion); None
    when nothing with a positive weight is left."""
    left = [x for x in split if x.version != str(version)]
    if not left or not sum(x.weight for x in left) > 0:
        return None
    return make_split([(x.name, x.version, x.weight) for x in left], primary=left[0].version)


def to_json(split: Sequence[Variant]) -> str | None:
    """The one spelling of a split, as the registry stores it; None for the version alone."""
    if is_solo(split):
        return None
    return json.dumps([[x.name, x.version, x.weight] for x in split], separators=(",", ":"))


def from_json(text: str | None, version: str | int | None = None) -> Split:
    """A split as ``to_json`` wrote it (None: ``version`` alone, or no split without one)."""
    if text is None:
        return () if version is None else solo(version)
    try:
        rows = json.loads(text)
        return tuple(Variant(str(n), str(v), float(w)) for n, v, w in rows)
    except (TypeError, ValueError) as exc:
        raise VariantError(f"stored split {text!r} is unreadable ({exc})") from None


def describe(split: Sequence[Variant]) -> str:
    """``v3=3:90% v4=4:10%``: what the CLI prints and the history's detail records."""
    return " ".join(str(x) for x in split)
