"""A datasource record as text a person reads: what, where, how big, and each attribute at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onyxserve.training.datasource.record import Datasource

_MAX_VIOLATIONS_SHOWN = 10


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e12):
        return f"{int(x):,}"
    return f"{x:.4g}"


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f", {n:.0f} {unit}" if unit == "B" else f", {n:.1f} {unit}"
        n /= 1024
    return ""


def _describe(stats: dict[str, Any]) -> str:
    kind = stats["type"]
    if kind == "NUMERIC":
        q = stats.get("quantiles", {})
        return (
            f"mean {_num(stats['mean'])}  std {_num(stats['std'])}  min {_num(stats['min'])}"
            f"  median {_num(q.get('p50'))}  max {_num(stats['max'])}"
        )
    distinct = f"{_num(stats['distinct'])}{'' if stats.get('distinctExact', True) else '+'} distinct"
    if kind == "TEXT":
        length = stats.get("length", {})
        return f"{distinct}  length {_num(length.get('min'))}..{_num(length.get('max'))} (mean {_num(length.get('mean'))})"
    top = stats.get("top") or []
    shown = ", ".join(f"{v!r} {c:,}" for v, c in top[:4])
    return f"{distinct}  top: {shown}" if shown else distinct


def summarize(ds: Datasource) -> str:
    s = ds.schema
    lines = [
        (
            f"datasource {ds.name}: {ds.row_count:,} rows, {len(s.attributes)} attributes"
            f" ({ds.data_format}{_size(ds.size_bytes)})"
        ),
        f"  location  {ds.location.uri}"
        + (f"\n  query     {ds.location.query}" if ds.location.query else ""),
        f"  checksum  sha256 {ds.checksum} (of the {ds.checksum_of})",
    ]
    if s.target is not None:
        lines.append(f"  target    {s.target} ({s.attributes[s.target].value}, task {ds.task})")
    else:
        lines.append("  target    none (usable for batch prediction, not for training)")
    if s.row_id:
        lines.append(f"  row id    {s.row_id}")
    if s.excluded:
        lines.append(f"  excluded  {', '.join(s.excluded)}")
    width = max(len(a) for a in s.attributes)
    lines.append("")
    lines.append(f"  {'attribute':<{width}}  {'type':<12}  {'missing':>8}  summary")
    for name, kind in s.attributes.items():
        stats = ds.statistics[name]
        role = (
            " (target)"
            if name == s.target
            else " (row id)"
            if name == s.row_id
            else " (excluded)"
            if name in s.excluded
            else ""
        )
        source = "" if name not in ds.inferred else "*"
        lines.append(
            f"  {name:<{width}}  {kind.value + source:<12}  {stats['missing']:>8,}  {_describe(stats)}{role}"
        )
    if ds.inferred:
        lines.append("  (* inferred from the data; a schema file can override it)")
    if ds.warnings:
        lines.append("")
        lines.append(f"  {len(ds.warnings)} warning{'s' if len(ds.warnings) > 1 else ''}:")
        lines.extend(f"    {note}" for note in ds.warnings)
    v = ds.violations
    if v.get("count"):
        lines.append("")
        lines.append(
            f"  {v['count']:,} schema violations"
            + (f" (first {min(len(v['rows']), _MAX_VIOLATIONS_SHOWN)} shown)" if v["count"] > 1 else "")
            + ":"
        )
        for item in v["rows"][:_MAX_VIOLATIONS_SHOWN]:
            lines.append(f"    row {item['row']}, column {item['column']!r}: {item['reason']}")
    return "\n".join(lines)
