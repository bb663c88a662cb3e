"""``onyxserve registry``: the index of model versions, their stages and history.

    onyxserve registry list [MODEL]                  models (or a model's versions)
    onyxserve registry show MODEL [VERSION]          a version, or a model's stages and history
    onyxserve registry compare MODEL V1 V2 [V...]    metrics side by side
    onyxserve registry promote MODEL VERSION [--stage production] [--force]
    onyxserve registry promote MODEL VERSION --canary PERCENT [--variant NAME]
    onyxserve registry variants MODEL [[NAME=]VERSION:WEIGHT ...]   show or set the production split
    onyxserve registry rollback MODEL                production (and its split) back to the previous one
    onyxserve registry approve MODEL VERSION [--reject] [--note TEXT]
    onyxserve registry delete MODEL VERSION [--force]
    onyxserve registry register MODEL VERSION        index an exported version
    onyxserve registry sync                          index every version on disk

A server running on the repository (``onyxserve serve``, poll mode) follows the stages within
its poll interval: production answers requests without a version; shadow and staging are
loaded for explicit-version requests; a promotion to a version that cannot load leaves the
previous one serving. Production traffic can be shared by weight between versions (``variants``,
``promote --canary``); the server follows a new split within its poll interval, dropping nothing.
``onyxserve serve --version-source config`` ignores stages.

Every action takes ``--repository DIR`` (default $ONYXSERVE_REPOSITORY, else ./models) and
``--registry-db FILE`` (default DIR/registry.db; ``--db`` is its deprecated spelling); ``--actor``
names who did it (default the user). Exit codes (``onyxserve.cli.run``): 0 done, 1 refused (the
message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from onyxserve.cli._options import add_command, add_json, add_registry_db, add_repository, deprecated_alias


def register(subparsers: argparse._SubParsersAction) -> None:
    from onyxserve.repository.schema import STAGES

    p = add_command(
        subparsers,
        "registry",
        "list, show, compare, promote, roll back, approve, delete model versions",
        "The SQLite index of the model repository: versions, approval, stages, history. A running"
        " `onyxserve serve` (poll mode) follows the stages within its poll interval: production"
        " answers requests without a version, shadow and staging are loaded for explicit-version"
        " requests; `serve --version-source config` ignores them.",
    )
    common = argparse.ArgumentParser(add_help=False)
    add_repository(common)
    deprecated_alias(common, "--db", add_registry_db(common))
    common.add_argument("--actor", help="who is acting (default: $ONYXSERVE_ACTOR, else the user name)")
    add_json(common)
    sub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")

    def action(name: str, summary: str, details: str | None = None) -> argparse.ArgumentParser:
        return add_command(sub, name, summary, details, parents=[common])

    a = action("list", "list models, or the versions of MODEL")
    a.add_argument("model", nargs="?")
    a = action("show", "show a version, or a model's stages and recent history")
    a.add_argument("model")
    a.add_argument("version", nargs="?")
    a.add_argument("--limit", type=int, default=20, help="history entries shown")
    a = action("compare", "compare the metrics of versions of a model")
    a.add_argument("model")
    a.add_argument("versions", nargs="+")
    a = action(
        "promote",
        f"point a stage ({', '.join(STAGES)}) at a version",
        "A polling server switches to it within its poll interval (a version that fails to load is"
        " not switched to).",
    )
    a.add_argument("model")
    a.add_argument("version")
    a.add_argument("--stage", default="production", choices=STAGES, help="the stage")
    a.add_argument("--force", action="store_true", help="promote even if not approved")
    a.add_argument(
        "--canary", type=float, metavar="PERCENT",
        help="production only: VERSION takes this share of production traffic, the other variants share the"
        " rest as before (the production version stays production); 100 promotes it fully",
    )
    a.add_argument("--variant", metavar="NAME", help="with --canary: the variant's name (default: vVERSION)")
    a = action(
        "variants",
        "show or set how production traffic is split between versions",
        "Each VARIANT is [NAME=]VERSION:WEIGHT (e.g. 3:90 4:10, or blue=3:90 green=4:10); weights are"
        " relative (9:1 is 90:10) and stored as percentages. The production version stays production"
        " when it is in the split, else the heaviest variant becomes production. Requests without a"
        " version are spread by weight (sticky with a routing_key request parameter; a variant parameter"
        " names one); a polling server follows within its poll interval. `rollback` restores the split"
        " before; `promote MODEL VERSION` ends it.\n\n"
        "    onyxserve registry variants fraud 3:90 4:10\n"
        "    onyxserve registry variants fraud           # show",
    )
    a.add_argument("model")
    a.add_argument("variants", nargs="*", metavar="VARIANT", help="[NAME=]VERSION:WEIGHT")
    a.add_argument("--force", action="store_true", help="set even if a version is not approved")
    a = action(
        "clear-stage",
        "point a stage at no version, e.g. end a shadow comparison",
        "A polling server follows within its poll interval (production needs --force: the model then"
        " serves by config.json's version_policy).",
    )
    a.add_argument("model")
    a.add_argument("stage", choices=STAGES)
    a.add_argument("--force", action="store_true", help="clear even production")
    a = action(
        "rollback",
        "move production back to the version that held it before",
        "A polling server follows within its poll interval.",
    )
    a.add_argument("model")
    a = action("approve", "approve (or --reject) a version")
    a.add_argument("model")
    a.add_argument("version")
    a.add_argument("--reject", action="store_true", help="reject instead")
    a.add_argument("--note", default="", help="recorded in the history")
    a = action(
        "threshold",
        "set a binary version's decision threshold",
        "Label = positive class iff its probability >= the threshold. A polling server answers with"
        " it within its poll interval; batch-predict uses it too.",
    )
    a.add_argument("model")
    a.add_argument("version")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("value", nargs="?", type=float, help="a probability between 0 and 1")
    g.add_argument("--clear", action="store_true", help="back to the model's own label (0.5)")
    a = action("delete", "delete a version's files and index entry")
    a.add_argument("model")
    a.add_argument("version")
    a.add_argument("--force", action="store_true", help="delete even the production version")
    a = action("register", "index an exported version")
    a.add_argument("model")
    a.add_argument("version")
    action("sync", "index every version on disk; forget indexed versions whose files are gone")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onyxserve.repository.registry import Registry

    reg = Registry(args.repository, args.registry_db)  # None: registry_path(repository)
    out = _ACTIONS[args.registry_command](reg, args)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    return 0


def _list(reg, args) -> Any:
    if args.model:
        records = [r.to_dict() for r in reg.list_versions(args.model)]
        if not args.json:
            _table(
                ["version", "task", "approval", "stages", "created_at", "auc/f1_macro/rmse"],
                [
                    [
                        r["version"],
                        r["task"],
                        r["approval"],
                        ",".join(r["stages"]),
                        r["created_at"],
                        _headline(r["metrics"]),
                    ]
                    for r in records
                ],
            )
        return records
    models = reg.list_models()
    if not args.json:
        _table(
            ["model", "versions", "latest", "stages"],
            [
                [
                    m["name"],
                    m["versions"],
                    m["latest"] or "-",
                    " ".join(f"{k}={v}" for k, v in m["stages"].items()),
                ]
                for m in models
            ],
        )
    return models


def _show(reg, args) -> Any:
    if args.version:
        rec = reg.get_version(args.model, args.version).to_dict()
        if not args.json:
            for key, value in rec.items():
                if key != "metrics":
                    print(f"{key:16} {value}")
            for key, value in sorted(rec["metrics"].items()):
                print(f"  {key:22} {value}")
        return rec
    out = {
        "model": args.model,
        "stages": reg.aliases(args.model),
        "variants": _split_json(reg.split(args.model)),
        "versions": [r.to_dict() for r in reg.list_versions(args.model)],
        "history": [h.to_dict() for h in reg.history(args.model, args.limit)],
    }
    if not args.json:
        print(
            f"{args.model}: {len(out['versions'])} versions; stages: "
            + (" ".join(f"{k}={v}" for k, v in sorted(out["stages"].items())) or "none")
        )
        if len(out["variants"]) > 1:
            print(f"production split: {_split_text(reg.split(args.model))}")
        _table(
            ["at", "actor", "action", "version", "stage", "previous", "detail"],
            [
                [
                    h["at"],
                    h["actor"],
                    h["action"],
                    h["version"] or "",
                    h["stage"] or "",
                    h["previous"] or "",
                    h["detail"],
                ]
                for h in out["history"]
            ],
        )
    return out


def _compare(reg, args) -> Any:
    cmp = reg.compare(args.model, args.versions)
    if not args.json:
        rows = [[k, *(_fmt(v) for v in vals)] for k, vals in cmp["metrics"].items()]
        rows += [
            ["threshold", *(_fmt(v) for v in cmp["threshold"])],
            ["approval", *cmp["approval"]],
            ["stages", *(",".join(s) for s in cmp["stages"])],
        ]
        _table(["metric", *(f"v{v}" for v in cmp["versions"])], rows)
    return cmp


def _promote(reg, args) -> Any:
    if args.canary is not None or args.variant is not None:
        return _canary(reg, args)
    previous = reg.promote(args.model, args.version, args.stage, force=args.force, actor=args.actor)
    if not args.json:
        print(f"{args.model}: {args.stage} = {args.version}" + (f" (was {previous})" if previous else ""))
    return {"model": args.model, "stage": args.stage, "version": args.version, "previous": previous}


def _canary(reg, args) -> Any:
    from onyxserve.errors import UsageError

    if args.canary is None or args.stage != "production":
        raise UsageError(
            "--variant names a canary: give --canary PERCENT too" if args.canary is None
            else f"--canary shifts production traffic; not with --stage {args.stage}"
        )
    before, after = reg.canary(
        args.model, args.version, args.canary, variant=args.variant, force=args.force, actor=args.actor
    )
    if not args.json:
        print(f"{args.model}: production split {_split_text(before)} -> {_split_text(after)}")
    return {"model": args.model, "before": _split_json(before), "variants": _split_json(after)}


def _variants(reg, args) -> Any:
    from onyxserve.repository.variants import VariantError, parse_spec

    if not args.variants:
        split = reg.split(args.model)
        if not args.json:
            print(f"{args.model}: production split {_split_text(split)}")
        return {"model": args.model, "variants": _split_json(split)}
    try:
        entries = [parse_spec(spec) for spec in args.variants]
    except VariantError as exc:
        from onyxserve.repository.registry import RegistryError

        raise RegistryError(f"{args.model}: {exc}") from None
    before, after = reg.set_split(args.model, entries, force=args.force, actor=args.actor)
    if not args.json:
        print(f"{args.model}: production split {_split_text(before)} -> {_split_text(after)}")
    return {"model": args.model, "before": _split_json(before), "variants": _split_json(after)}


def _split_text(split) -> str:
    from onyxserve.repository.variants import describe

    return describe(split) if split else "none (no production version)"


def _split_json(split) -> list[dict[str, Any]]:
    return [{"name": x.name, "version": x.version, "weight": x.weight} for x in split]


def _rollback(reg, args) -> Any:
    old, new = reg.rollback(args.model, actor=args.actor)
    split = reg.split(args.model)
    if not args.json:
        print(f"{args.model}: production {old} -> {new}" + (f" (split {_split_text(split)})" if len(split) > 1 else ""))
    return {"model": args.model, "from": old, "to": new, "variants": _split_json(split)}


def _approve(reg, args) -> Any:
    reg.approve(args.model, args.version, reject=args.reject, note=args.note, actor=args.actor)
    status = "rejected" if args.reject else "approved"
    if not args.json:
        print(f"{args.model}/{args.version}: {status}")
    return {"model": args.model, "version": args.version, "approval": status}


def _clear_stage(reg, args) -> Any:
    previous = reg.clear_stage(args.model, args.stage, force=args.force, actor=args.actor)
    if not args.json:
        print(f"{args.model}: {args.stage} {previous} -> none" if previous else f"{args.model}: {args.stage} was not set")
    return {"model": args.model, "stage": args.stage, "previous": previous}


def _threshold(reg, args) -> Any:
    value = None if args.clear else args.value
    before = reg.set_threshold(args.model, args.version, value, actor=args.actor)
    if not args.json:
        print(f"{args.model}/{args.version}: threshold {before} -> {value}")
    return {"model": args.model, "version": args.version, "threshold": value, "previous": before}


def _delete(reg, args) -> Any:
    reg.delete(args.model, args.version, force=args.force, actor=args.actor)
    if not args.json:
        print(f"{args.model}/{args.version}: deleted")
    return {"model": args.model, "version": args.version, "deleted": True}


def _register(reg, args) -> Any:
    rec = reg.register_version(args.model, args.version, actor=args.actor).to_dict()
    if not args.json:
        print(f"{args.model}/{args.version}: registered ({rec['approval']})")
    return rec


def _sync(reg, args) -> Any:
    report = reg.sync(actor=args.actor)
    if not args.json:
        print(f"added {len(report.added)}: " + " ".join(f"{m}/{v}" for m, v in report.added))
        print(f"forgotten {len(report.forgotten)}: " + " ".join(f"{m}/{v}" for m, v in report.forgotten))
    return {"added": report.added, "forgotten": report.forgotten}


_ACTIONS = {
    "list": _list,
    "show": _show,
    "compare": _compare,
    "promote": _promote,
    "variants": _variants,
    "clear-stage": _clear_stage,
    "rollback": _rollback,
    "approve": _approve,
    "threshold": _threshold,
    "delete": _delete,
    "register": _register,
    "sync": _sync,
}


def _headline(metrics: dict[str, Any]) -> str:
    for key in ("auc", "f1_macro", "rmse"):
        if key in metrics:
            return f"{key}={_fmt(metrics[key])}"
    return "-"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
