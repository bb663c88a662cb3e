"""Shadow evaluation: a candidate version sees production's traffic (``mirror``), its answers are
compared row by row (``compare``) and counted (``stats``), but never returned."""

from onyxserve._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {}, legacy_module=".mirror")
