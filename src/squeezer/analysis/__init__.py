"""Measurement: parameters, non-zeros, FLOPs, bytes, latency and the survey's metrics."""

from __future__ import annotations

from squeezer.analysis.counting import (
    LayerCounts,
    count_flops,
    count_nonzero,
    count_params,
    layer_counts,
    size_bytes,
)
from squeezer.analysis.deploy import inference_copy
from squeezer.analysis.latency import Latency, layer_latency, time_models
from squeezer.analysis.measure import (
    Comparison,
    Measurement,
    backend_name,
    compare,
    format_measurement,
    measure,
)
from squeezer.analysis.over_data import DataCost, DataMeasurement, measure_data
from squeezer.analysis.quality import output_similarity

__all__ = [
    "Comparison",
    "DataCost",
    "DataMeasurement",
    "Latency",
    "LayerCounts",
    "Measurement",
    "backend_name",
    "compare",
    "count_flops",
    "count_nonzero",
    "count_params",
    "format_measurement",
    "inference_copy",
    "layer_counts",
    "layer_latency",
    "measure",
    "measure_data",
    "output_similarity",
    "size_bytes",
    "time_models",
]
