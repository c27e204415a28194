"""Deployment: ONNX export with an accuracy check, and the backends latency is timed on.

report = sq.export(model, x, "m.onnx", check=test_set)
sq.measure(model, x, baseline=original, backend="onnxruntime")
"""

from __future__ import annotations

from squeezer.deploy.backends import BACKENDS, OnnxRuntimeModule, Prepared, prepare
from squeezer.deploy.export import ExportReport, export

__all__ = ["BACKENDS", "ExportReport", "OnnxRuntimeModule", "Prepared", "export", "prepare"]
