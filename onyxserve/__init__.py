"""onyxserve: serve scikit-learn models as ONNX over the V2 inference protocol."""

__version__ = "0.1.0"
