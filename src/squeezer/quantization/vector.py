"""Vector quantization of weights: product quantization and residual quantization (Gong, Liu,
Yang & Bourdev 2014, "Compressing Deep Convolutional Networks using Vector Quantization").

A weight (out x in, or out x in x kh x kw flattened to out rows) is cut along its rows into
sub-vectors of ``subvector`` consecutive values. Product quantization runs k-means with
``2^bits`` centres on the sub-vectors of each column segment (one codebook per segment, as in
the paper) or of the whole layer (``shared_codebook``, which pays off on small layers), and
stores one index per sub-vector. Residual quantization repeats this ``stages`` times on what
the previous stages left over, the weight being the sum of the chosen codewords.

The codebooks are the trainable parameters afterwards (a parametrization, as k-means sharing's
scalar codebook is): fine-tuning moves each codeword by the summed gradient of the sub-vectors
that use it. The ``.sqz`` coder stores the codebooks in float32 and the indices at ``bits``
(Huffman coded), and rebuilds the weight bit for bit.

    sq.quantize_(model, sq.quantization.ProductQuantization(subvector=4, bits=8))
    sq.quantize_(model, sq.quantization.ProductQuantization(subvector=4, bits=4, stages=2))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, register_handler, remove_parametrization_
from squeezer.errors import ModelError

MAX_VQ_BITS = 12


@dataclass(frozen=True)
class ProductQuantization(LayerSelection):
    """Product (and residual) quantization of the selected layers' weights.

    Attributes:
        subvector: values per sub-vector (must divide the row length of every selected layer:
            ``in_features``, or ``in_channels/groups x kh x kw``).
        bits: index width; each codebook holds ``2^bits`` codewords.
        stages: 1 is product quantization; more quantize the residual again (residual
            quantization), adding ``bits`` per sub-vector each.
        shared_codebook: one codebook for every segment of a layer instead of one per segment.
        iterations: k-means iterations per codebook.
        seed: seed of the k-means initialization.
        layers, exclude, layer_types: which layers (default: every Linear and Conv).
    """

    subvector: int = 4
    bits: int = 8
    stages: int = 1
    shared_codebook: bool = False
    iterations: int = 25
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        check(
            isinstance(self.subvector, int) and self.subvector >= 1,
            "ProductQuantization: subvector must be an integer >= 1",
        )
        check(
            isinstance(self.bits, int) and 1 <= self.bits <= MAX_VQ_BITS,
            f"ProductQuantization: bits must be in [1, {MAX_VQ_BITS}]",
        )
        check(
            isinstance(self.stages, int) and self.stages >= 1,
            "ProductQuantization: stages must be >= 1",
        )
        check(self.iterations >= 1, "ProductQuantization: iterations must be >= 1")


def ResidualQuantization(**fields: object) -> ProductQuantization:
    """Residual quantization (Gong 2014): :class:`ProductQuantization` with two stages unless
    ``stages`` says otherwise."""
    fields.setdefault("stages", 2)
    return ProductQuantization(**fields)  # type: ignore[arg-type]


def kmeans_vectors(x: Tensor, k: int, iterations: int = 25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """k-means of the rows of ``x`` (n x d): ``(centres k x d, labels n)``; k-means++ start;
    an emptied centre is moved to the point farthest from its centre."""
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    if n <= k:
        centres = torch.zeros(k, x.shape[1], dtype=x.dtype)
        centres[:n] = x
        return centres, torch.arange(n)
    centres = x[torch.randint(n, (1,), generator=g)].clone()
    dist = torch.cdist(x, centres).squeeze(1) ** 2
    for _ in range(1, k):  # k-means++
        probs = dist / dist.sum() if float(dist.sum()) > 0 else torch.full_like(dist, 1 / n)
        pick = torch.multinomial(probs, 1, generator=g)
        centres = torch.cat([centres, x[pick]])
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    labels = torch.cdist(x, centres).argmin(1)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        empty = counts == 0
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        d = torch.cdist(x, centres)
        new = d.argmin(1)
        if bool(empty.any()):
            far = (d.gather(1, new[:, None]).squeeze(1)).argsort(descending=True)
            for c, i in zip(torch.nonzero(empty).flatten().tolist(), far.tolist(), strict=False):
                centres[c] = x[i]
            new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return centres, labels


class VectorQuantizedWeight(nn.Module):
    """Parametrization ``weight = sum over stages of codebook[stage, segment][index]``; the
    parameter it owns is the codebooks tensor (stages x books x k x subvector)."""

    def __init__(
        self, indices: Tensor, shape: tuple[int, ...], books: int, codebooks: Tensor
    ) -> None:
        super().__init__()
        self.register_buffer("indices", indices.to(torch.int64))  # stages x rows x segments
        self.shape = tuple(int(s) for s in shape)
        self.books = int(books)
        self._initial: Tensor | None = codebooks  # what registration stores as the original

    def forward(self, codebooks: Tensor) -> Tensor:
        return vq_weight(codebooks, self.indices, self.shape)

    def right_inverse(self, weight: Tensor) -> Tensor:
        """The codebooks k-means found (only at registration: a weight assigned later has
        no unique codebook; quantize the layer again instead)."""
        if self._initial is None:
            raise ModelError("a vector-quantized weight cannot be assigned; quantize again")
        initial, self._initial = self._initial, None
        return initial

    def extra_repr(self) -> str:
        stages, rows, segments = self.indices.shape
        return f"stages={stages}, rows={rows}, segments={segments}, books={self.books}"


def vq_weight(codebooks: Tensor, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The weight vector quantization describes (the layer and the ``.sqz`` decoder both use
    this, so a reload is bit-exact)."""
    stages, rows, segments = indices.shape
    books = codebooks.shape[1]
    seg = torch.arange(segments) if books > 1 else torch.zeros(segments, dtype=torch.int64)
    out = None
    for t in range(stages):
        part = codebooks[t][seg[None, :], indices[t]].reshape(rows, -1)
        out = part if out is None else out + part
    return out.reshape(shape)


def quantize_vectors(
    module: nn.Module, config: ProductQuantization, tensor: str = "weight"
) -> dict[str, object]:
    """Replace ``module.<tensor>`` by its vector-quantized form; returns a summary."""
    with torch.no_grad():
        w = getattr(module, tensor).detach().clone().float()
    rows = w.shape[0]
    flat = w.reshape(rows, -1)
    d = config.subvector
    if flat.shape[1] % d:
        raise ModelError(
            f"ProductQuantization: subvector {d} does not divide the row length "
            f"{flat.shape[1]} of this layer; pick a divisor or exclude the layer"
        )
    segments = flat.shape[1] // d
    books = 1 if config.shared_codebook else segments
    k = 2**config.bits
    residual = flat.reshape(rows, segments, d)
    codebooks = torch.zeros(config.stages, books, k, d)
    indices = torch.zeros(config.stages, rows, segments, dtype=torch.int64)
    for t in range(config.stages):
        if books == 1:
            centres, labels = kmeans_vectors(
                residual.reshape(-1, d), k, config.iterations, config.seed + t
            )
            codebooks[t, 0] = centres
            indices[t] = labels.reshape(rows, segments)
        else:
            for s in range(segments):
                centres, labels = kmeans_vectors(
                    residual[:, s], k, config.iterations, config.seed + 7919 * t + s
                )
                codebooks[t, s] = centres
                indices[t, :, s] = labels
        seg = torch.arange(segments) if books > 1 else torch.zeros(segments, dtype=torch.int64)
        residual = residual - codebooks[t][seg[None, :], indices[t]]
    if parametrize.is_parametrized(module, tensor):
        remove_parametrization_(module, tensor)
    p = VectorQuantizedWeight(indices, tuple(w.shape), books, codebooks)
    parametrize.register_parametrization(module, tensor, p, unsafe=True)
    with torch.no_grad():
        approx = getattr(module, tensor)
        error = float((approx - w).norm() / w.norm().clamp(min=1e-30))
    bits_per_weight = config.stages * config.bits / d
    return {
        "segments": segments,
        "codebooks": books * config.stages,
        "bits_per_weight": bits_per_weight,
        "relative_error": error,
    }


def vq_codes(module: nn.Module, tensor: str = "weight") -> tuple[Tensor, Tensor, int] | None:
    """``(indices, codebooks, bits)`` of a vector-quantized tensor, for the ``.sqz`` coder."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    plist = module.parametrizations[tensor]
    if len(plist) != 1 or not isinstance(plist[0], VectorQuantizedWeight):
        return None
    codebooks = plist.original.detach()
    bits = max(1, (codebooks.shape[2] - 1).bit_length())
    return plist[0].indices.clone(), codebooks.clone(), bits


@register_handler("quantize", ProductQuantization)
def product_quantize_(
    model: nn.Module,
    config: ProductQuantization,
    example_inputs: object = None,
    *,
    data: object = None,
) -> PerLayerReport:
    """Vector-quantize every selected layer's weight (in place); the codebooks train after.

    Raises:
        ModelError: no selected layer, or a sub-vector length that does not divide a layer's
            rows (the message names the layer).
    """
    report = {}
    for name, module in config.select(model):
        if not isinstance(getattr(module, "weight", None), Tensor):
            continue
        try:
            report[name] = quantize_vectors(module, config)
        except ModelError as err:
            raise ModelError(f"quantize_: {name}: {err}") from None
    if not report:
        raise ModelError("quantize_: ProductQuantization found no layer of the given types")
    method = "residual quantization" if config.stages > 1 else "product quantization"
    return PerLayerReport(method, report, subvector=config.subvector, bits=config.bits)
