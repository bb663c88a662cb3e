"""The compiled scoring core: manifest schema, feature normalization, ONNX scoring."""
