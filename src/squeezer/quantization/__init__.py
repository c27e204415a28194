"""Weight sharing and quantization: trained k-means sharing (Deep Compression) and int8.

sq.quantize_(model, sq.quantization.KMeansSharing(fc_bits=5, conv_bits=8))
q = sq.quantize(model, sq.quantization.Int8(backend="inductor"), x, calibration=batches)
"""

from __future__ import annotations

from squeezer.quantization.int8 import Int8, Int8Report, QuantizedModel, load_int8
from squeezer.quantization.kmeans import (
    KMeansSharing,
    SharedWeights,
    codebook_of,
    initial_centroids,
    kmeans_1d,
    share_weights,
    share_weights_,
)
from squeezer.quantization.observers import OBSERVERS
from squeezer.quantization.verb import quantize, quantize_

__all__ = [
    "OBSERVERS",
    "Int8",
    "Int8Report",
    "KMeansSharing",
    "QuantizedModel",
    "SharedWeights",
    "codebook_of",
    "initial_centroids",
    "kmeans_1d",
    "load_int8",
    "quantize",
    "quantize_",
    "share_weights",
    "share_weights_",
]
