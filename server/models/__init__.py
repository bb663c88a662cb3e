"""Loaded models: which versions serve (``selection`` decides, ``manager`` loads and unloads),
one served version (``served``), and how a request's tensors map onto its features (``decoder``)."""
