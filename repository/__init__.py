"""The model repository: the on-disk contract training writes and serving reads.

    <repository>/<model>/<version>/model.onnx       the estimator, exported by skl2onnx
    <repository>/<model>/<version>/manifest.json    everything the server must know (``manifest``)
    <repository>/<model>/<version>/evaluation.json  metrics and decision threshold, if evaluated
    <repository>/<model>/config.json                per-model serving config, Triton's words (``config``)
    <repository>/registry.db                        versions, approval, stages, history (``registry``)
    <repository>/.trash/                            deleted versions on their way out

Where each file is, is said once, in ``store`` (file names, ``registry_path(repository,
override)`` for the registry database, ``version_repository(version_dir)`` for the repository a
version folder belongs to); the server, the registry, batch prediction and evaluation all ask it.

Who writes, who reads:

- A version folder is written once, by export (``store.write_version``), and never changed:
  the registry refuses different files under a registered number. It is removed only by
  ``Registry.delete``. Read by the server (every scan), batch prediction, evaluation and the
  registry (``register``, ``sync``).
- ``evaluation.json`` is written by ``evaluate_version``; the registry reads its metrics and
  threshold when it indexes the version.
- ``config.json``: export writes the default if there is none (never overwrites); the user edits
  it; the server reads it at each scan.
- ``registry.db`` is written by ``Registry`` only (the registry CLI, export's ``register``,
  evaluation's ``record_evaluation``); the server reads it through ``StageReader``, read-only;
  batch prediction reads thresholds from it. Its tables, stage names and production-history
  replay are ``schema``'s, shared by the writer and the reader.

Atomicity: a version appears whole or not at all (written into a hidden ``.tmp-`` folder,
fsynced, renamed into place; two writers never get the same number); ``config.json`` and
``evaluation.json`` are fsynced temporary files linked or renamed into place; every registry
change is one SQLite transaction (``BEGIN IMMEDIATE``, WAL, ``synchronous=FULL``), so a killed
writer leaves the previous state; the server's reader opens ``mode=ro`` + ``query_only``, reads
one snapshot and closes at once, so it never blocks a writer; a deleted version is renamed into
``.trash`` (gone for the server in one step), the index committed, then the files removed.

The files are the truth about what exists; ``registry.db`` adds what files cannot say. Nothing
here imports scikit-learn or the server: training and serving both import this package.
"""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "Manifest": ".manifest",
    "ManifestError": ".manifest",
    "ModelConfig": ".config",
    "ConfigError": ".config",
    "Registry": ".registry",
    "RegistryError": ".registry",
    "StageReader": ".stages",
    "ModelStages": ".stages",
    "list_models": ".store",
    "list_versions": ".store",
    "write_version": ".store",
    "registry_path": ".store",
    "version_repository": ".store",
    "STAGES": ".schema",
    "SERVED_STAGES": ".schema",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
