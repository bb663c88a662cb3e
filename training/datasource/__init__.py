"""Datasources: where the data is (``locations``), how it is read (``readers``), its schema
(``schema``), statistics (``profile``), the record tying them together (``record``, printed by
``summary``) and Amazon ML's DataRearrangement splits (``splits``)."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "Datasource": ".record",
    "create_datasource": ".record",
    "load_datasource": ".record",
    "read_frames": ".record",
    "split_datasource": ".splits",
    "parse_split": ".splits",
    "Schema": ".schema",
    "AttributeType": ".schema",
    "load_schema": ".schema",
    "DatasourceError": "onyxserve.training.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, legacy_module=".record")
