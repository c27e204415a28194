"""Weight sharing and quantization: trained k-means sharing (Deep Compression), int8 on
integer kernels, and k-bit quantization-aware training (QAT, LSQ, DoReFa, fixed point).

sq.quantize_(model, sq.quantization.KMeansSharing(fc_bits=5, conv_bits=8))
q = sq.quantize(model, sq.quantization.Int8(backend="inductor"), x, calibration=batches)
sq.quantize_(model, sq.quantization.LSQ(bits=4), data=batches); sq.fit(model, train)
"""

from __future__ import annotations

from squeezer.quantization.binary import (
    LAB,
    TTQ,
    TWN,
    XNOR,
    BinaryConnect,
    BinaryNet,
    TernaryConnect,
)
from squeezer.quantization.hashed import HashedNets, HashedWeight
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
from squeezer.quantization.qat import (
    LSQ,
    QAT,
    DoReFa,
    FixedPoint,
    KBit,
    calibrate,
    dequantize_,
    freeze_,
    frozen_copy,
    quantized_layers,
)
from squeezer.quantization.soft_sharing import (
    GaussianMixturePrior,
    SoftSharedWeight,
    SoftWeightSharing,
    mixture_of,
)
from squeezer.quantization.vector import (
    ProductQuantization,
    ResidualQuantization,
    VectorQuantizedWeight,
    kmeans_vectors,
)
from squeezer.quantization.verb import quantize, quantize_
from squeezer.quantization.xnor_kernel import pack_binary_

__all__ = [
    "LAB",
    "LSQ",
    "OBSERVERS",
    "QAT",
    "TTQ",
    "TWN",
    "XNOR",
    "BinaryConnect",
    "BinaryNet",
    "DoReFa",
    "FixedPoint",
    "GaussianMixturePrior",
    "HashedNets",
    "HashedWeight",
    "Int8",
    "Int8Report",
    "KBit",
    "KMeansSharing",
    "ProductQuantization",
    "QuantizedModel",
    "ResidualQuantization",
    "SharedWeights",
    "SoftSharedWeight",
    "SoftWeightSharing",
    "TernaryConnect",
    "VectorQuantizedWeight",
    "calibrate",
    "codebook_of",
    "dequantize_",
    "freeze_",
    "frozen_copy",
    "initial_centroids",
    "kmeans_1d",
    "kmeans_vectors",
    "load_int8",
    "mixture_of",
    "pack_binary_",
    "quantize",
    "quantize_",
    "quantized_layers",
    "share_weights",
    "share_weights_",
]
