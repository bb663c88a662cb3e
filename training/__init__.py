"""The model lifecycle: export (and later datasources, training, evaluation, registry)."""
