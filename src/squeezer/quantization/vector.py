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

With ``response=True`` (one stage) the codebooks are fitted to the layer's outputs on the
user's batches instead of to its weights, as Q-CNN does (Wu, Leng, Wang, Hu & Cheng, CVPR
2016), with its error correction: layer by layer in forward order, sub-vector ``w`` of a row
is assigned to the codeword ``c`` minimizing ``|X^_s c - X_s w|^2``, where ``X_s`` is the
segment of the layer's input in the original network and ``X^_s`` the same input in the
network quantized so far, and each codeword is the least-squares solution over the
sub-vectors assigned to it. Convolutions use their unfolded patches as rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
        response: fit the codebooks to the layer outputs on ``data`` with Q-CNN's error
            correction (see the module documentation) after the k-means start.
        max_rows: input rows (samples, or patches for a convolution) used per layer.
        max_batches: batches of ``data`` read.
        layers, exclude, layer_types: which layers (default: every Linear and Conv).
    """

    subvector: int = 4
    bits: int = 8
    stages: int = 1
    shared_codebook: bool = False
    iterations: int = 25
    seed: int = 0
    response: bool = False
    max_rows: int = 8192
    max_batches: int = 8

    def validate(self) -> None:
        super().validate()
        check(
            not self.response or self.stages == 1,
            "ProductQuantization: response=True (Q-CNN) fits one stage",
        )
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


def _input_rows(module: nn.Module, x: Tensor) -> Tensor:
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise ModelError("response=True supports Linear and ungrouped Conv2d layers")


def _capture_rows(
    model: nn.Module, name: str, module: nn.Module, batches: list, max_rows: int, seed: int
) -> Tensor:
    got: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, a: got.append(a[0].detach()))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                model(b[0] if isinstance(b, (tuple, list)) else b)
    finally:
        model.train(was)
        handle.remove()
    rows = torch.cat([_input_rows(module, x) for x in got])
    if rows.shape[0] > max_rows:
        pick = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))
        rows = rows[pick[:max_rows]]
    return rows.float()


def refit_to_response_(
    module: nn.Module, x_ref: Tensor, x_cur: Tensor, iterations: int, weight: Tensor
) -> float:
    """Q-CNN's assignment and codeword steps on the output error, in place on ``module``'s
    vector-quantized weight; returns the relative output error after."""
    plist = module.parametrizations.weight
    p = plist[0]
    books = plist.original.detach().clone()  # 1 x B x k x d
    idx = p.indices[0].clone()  # rows x segments
    rows, segments = idx.shape
    k, d = books.shape[2], books.shape[3]
    w = weight.reshape(rows, segments, d)
    shared = books.shape[1] == 1
    for _ in range(iterations):
        hs, gws = [], []
        for s in range(segments):
            xr, xc = x_ref[:, s * d : (s + 1) * d], x_cur[:, s * d : (s + 1) * d]
            h, g = xc.t() @ xc, xc.t() @ xr
            c = books[0, 0 if shared else s]  # k x d
            gw = w[:, s] @ g.t()  # rows x d: (G w_r)^T
            cost = ((c @ h) * c).sum(1)[None, :] - 2 * gw @ c.t()  # rows x k
            idx[:, s] = cost.argmin(1)
            hs.append(h)
            gws.append(gw)
        for b in range(books.shape[1]):
            segs = range(segments) if shared else [b]
            for j in range(k):
                hsum, rhs, used = torch.zeros(d, d), torch.zeros(d), False
                for s in segs:
                    members = idx[:, s] == j
                    n = int(members.sum())
                    if n:
                        hsum += n * hs[s]
                        rhs += gws[s][members].sum(0)
                        used = True
                if used:
                    reg = 1e-6 * torch.eye(d) * float(hsum.diagonal().mean().clamp(min=1e-12))
                    books[0, b, j] = torch.linalg.solve(hsum + reg, rhs)
    with torch.no_grad():
        p.indices[0].copy_(idx)
        plist.original.copy_(books)
        out_ref = x_ref @ weight.reshape(rows, -1).t()
        out = x_cur @ module.weight.detach().reshape(rows, -1).t()
    return float((out - out_ref).norm() / out_ref.norm().clamp(min=1e-30))


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
    batches = None
    reference = None
    if config.response:
        if data is None:
            raise ModelError("quantize_: ProductQuantization(response=True) needs data= batches")
        from squeezer.data import ImageDataset, loader

        if isinstance(data, ImageDataset):
            data = loader(data.without_augment(), 64, shuffle=True, seed=config.seed)
        batches = [b for _, b in zip(range(config.max_batches), data, strict=False)]
        reference = copy.deepcopy(model)
    chosen = [
        (n, m) for n, m in config.select(model) if isinstance(getattr(m, "weight", None), Tensor)
    ]
    for name, module in chosen:  # forward order for the error correction
        try:
            weight = module.weight.detach().clone().float()
            x_ref = x_cur = None
            if batches is not None:
                assert reference is not None
                seed = config.seed + len(report)
                x_ref = _capture_rows(reference, name, reference.get_submodule(name), batches,
                                      config.max_rows, seed)  # fmt: skip
                x_cur = _capture_rows(model, name, module, batches, config.max_rows, seed)
            report[name] = quantize_vectors(module, config)
            if x_ref is not None and x_cur is not None:
                report[name]["output_error"] = refit_to_response_(
                    module, x_ref, x_cur, min(config.iterations, 10), weight
                )
        except ModelError as err:
            raise ModelError(f"quantize_: {name}: {err}") from None
    if not report:
        raise ModelError("quantize_: ProductQuantization found no layer of the given types")
    method = "residual quantization" if config.stages > 1 else "product quantization"
    return PerLayerReport(method, report, subvector=config.subvector, bits=config.bits)
