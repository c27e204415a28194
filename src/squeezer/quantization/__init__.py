"""Weight sharing and quantization: trained k-means sharing (Deep Compression).

sq.quantize_(model, sq.quantization.KMeansSharing(fc_bits=5, conv_bits=8))
"""

from __future__ import annotations

from squeezer.quantization.kmeans import (
    KMeansSharing,
    SharedWeights,
    codebook_of,
    initial_centroids,
    kmeans_1d,
    share_weights,
    share_weights_,
)
from squeezer.quantization.verb import quantize_

__all__ = [
    "KMeansSharing",
    "SharedWeights",
    "codebook_of",
    "initial_centroids",
    "kmeans_1d",
    "quantize_",
    "share_weights",
    "share_weights_",
]
