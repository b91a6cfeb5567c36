"""Export to ONNX and sample from the exported files with onnxruntime."""
