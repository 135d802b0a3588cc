"""Torch-free inference: preprocessing shared with the worker and an onnxruntime predictor."""
