"""Binary inference (XNOR-Net, S9): weights and activations packed 64 to a word, dot
products by XNOR and popcount.

For two vectors of ``n`` signs, ``a . b = n - 2 popcount(a XOR b)``. A layer with binary
weights and binary inputs (``XNOR`` or ``BinaryNet``, frozen) becomes a
:class:`PackedBinaryConv2d` or :class:`PackedBinaryLinear` that computes exactly that:

- each input pixel's channel signs are packed into ``ceil(C / 64)`` 64-bit words (the
  channel dimension innermost, so a convolution's patch is a run of whole words and no
  im2col copy of the input is made); the weight is packed the same way once;
- zero padding contributes nothing (as in the float convolution of ``sign(x)`` it replaces):
  each patch counts only its in-bounds pixels, and the words past ``C`` are masked;
- the integer result is scaled by the weight scale (``alpha_c`` or BinaryConnect's ``H``),
  XNOR-Net's ``K`` map where the method has one, and the bias is added.

Two implementations give the same integers: a small C++ kernel (``torch.utils.cpp_extension``,
built at first use with ``-march=native``, so AVX-512 ``VPOPCNTDQ`` where the CPU has it;
threads from PyTorch's pool), and a pure-PyTorch fallback (popcount by a byte table) used
when the compiler is missing or the build fails, with a warning.
``SQUEEZER_NO_CPP_EXT=1`` forces the fallback.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.quantization.fake import xnor_k_map

WORD = 64

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>

// Pack the signs of x [P, C] (float, x >= 0 -> bit 1) into words [P, ceil(C / 64)].
torch::Tensor pack_signs(torch::Tensor x) {
  x = x.contiguous();
  const int64_t P = x.size(0), C = x.size(1), W = (C + 63) / 64;
  auto out = torch::zeros({P, W}, torch::dtype(torch::kInt64));
  const float* src = x.data_ptr<float>();
  int64_t* dst = out.data_ptr<int64_t>();
  at::parallel_for(0, P, 256, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* row = src + p * C;
      for (int64_t w = 0; w < W; ++w) {
        uint64_t word = 0;
        const int64_t lo = w * 64, hi = std::min<int64_t>(C, lo + 64);
        for (int64_t c = lo; c < hi; ++c) word |= (uint64_t)(row[c] >= 0.0f) << (c - lo);
        dst[p * W + w] = (int64_t)word;
      }
    }
  });
  return out;
}

// x [N, H, W, Cw] packed pixels, w [O, KH, KW, Cw] packed filters, cmask [Cw] valid bits.
// Returns the +-1 dot products [N, O, OH, OW] (int32), padding counting as zero.
torch::Tensor xnor_conv(torch::Tensor x, torch::Tensor w, torch::Tensor cmask, int64_t channels,
                        int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                        int64_t OH, int64_t OW) {
  x = x.contiguous(); w = w.contiguous(); cmask = cmask.contiguous();
  const int64_t N = x.size(0), H = x.size(1), Wd = x.size(2), Cw = x.size(3);
  const int64_t O = w.size(0), KH = w.size(1), KW = w.size(2);
  auto out = torch::empty({N, OH, OW, O}, torch::dtype(torch::kInt32));
  const uint64_t* X = (const uint64_t*)x.data_ptr<int64_t>();
  const uint64_t* F = (const uint64_t*)w.data_ptr<int64_t>();
  const uint64_t* M = (const uint64_t*)cmask.data_ptr<int64_t>();
  int32_t* Y = out.data_ptr<int32_t>();
  at::parallel_for(0, N * OH * OW, 1, [&](int64_t begin, int64_t end) {
    std::vector<const uint64_t*> rows(KH * KW);
    std::vector<int64_t> taps(KH * KW);
    for (int64_t pos = begin; pos < end; ++pos) {
      const int64_t n = pos / (OH * OW), oh = (pos / OW) % OH, ow = pos % OW;
      int64_t valid = 0, k = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * sh - ph + kh * dh;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * sw - pw + kw * dw;
          if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
          rows[k] = X + ((n * H + ih) * Wd + iw) * Cw;
          taps[k] = kh * KW + kw;
          ++k;
        }
      }
      valid = k * channels;
      int32_t* y = Y + pos * O;
      for (int64_t o = 0; o < O; ++o) {
        const uint64_t* f = F + o * KH * KW * Cw;
        int64_t diff = 0;
        for (int64_t t = 0; t < k; ++t) {
          const uint64_t* a = rows[t];
          const uint64_t* b = f + taps[t] * Cw;
          for (int64_t c = 0; c < Cw; ++c) diff += __builtin_popcountll((a[c] ^ b[c]) & M[c]);
        }
        y[o] = (int32_t)(valid - 2 * diff);
      }
    }
  });
  return out.permute({0, 3, 1, 2});
}
"""

_lock = threading.Lock()
_ext: Any = None
_tried = False


def extension() -> Any | None:
    """The compiled kernel, built on first call; None (with a warning) if it cannot be."""
    global _ext, _tried
    with _lock:
        if _tried:
            return _ext
        _tried = True
        if os.environ.get("SQUEEZER_NO_CPP_EXT"):
            return None
        try:
            from torch.utils.cpp_extension import load_inline

            from squeezer.deploy.export import quiet

            print(  # the one slow step a user waits for without a bar
                "squeezer: building the XNOR C++ kernel (once per machine, about a minute)",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            with quiet():
                _ext = load_inline(
                    "squeezer_xnor", cpp_sources=_SOURCE,
                    functions=["pack_signs", "xnor_conv"],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"],
                    extra_ldflags=["-fopenmp"],
                )  # fmt: skip
        except Exception as exc:  # a missing compiler, headers or ninja: several types
            warnings.warn(
                f"squeezer: the XNOR C++ kernel could not be built ({str(exc)[:200]}); "
                "using the pure-PyTorch popcount, same results, slower",
                stacklevel=2,
            )
            _ext = None
        return _ext


# ----------------------------------------------------------------- pure-PyTorch fallback
_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)
_SHIFTS = torch.arange(WORD, dtype=torch.int64)


def pack_signs_torch(x: Tensor) -> Tensor:
    """``[P, C]`` floats -> ``[P, ceil(C / 64)]`` int64 words, bit ``c % 64`` set where
    ``x >= 0``."""
    p, c = x.shape
    words = -(-c // WORD)
    bits = (x >= 0).to(torch.int64)
    bits = F.pad(bits, (0, words * WORD - c)).reshape(p, words, WORD)
    return (bits << _SHIFTS).sum(-1)  # distinct bits: the sum is the OR (two's complement)


def _popcount(words: Tensor) -> Tensor:
    """Set bits of each int64 word, summed over the last dimension."""
    as_bytes = words.contiguous().view(torch.uint8).long()
    return _POPCOUNT[as_bytes].reshape(*words.shape[:-1], -1).sum(-1)


def xnor_conv_torch(
    x: Tensor, w: Tensor, cmask: Tensor, channels: int, stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int],
) -> Tensor:  # fmt: skip
    """The same result as the C++ ``xnor_conv`` (see there), by a loop over the taps."""
    n, h, wd, _ = x.shape
    o, kh_n, kw_n, _ = w.shape
    oh_n, ow_n = out_hw
    diff = torch.zeros(n, oh_n, ow_n, o, dtype=torch.int64)
    valid = torch.zeros(oh_n, ow_n, dtype=torch.int64)
    oh = torch.arange(oh_n) * stride[0] - padding[0]
    ow = torch.arange(ow_n) * stride[1] - padding[1]
    for kh in range(kh_n):
        ih = oh + kh * dilation[0]
        for kw in range(kw_n):
            iw = ow + kw * dilation[1]
            inside = ((ih >= 0) & (ih < h))[:, None] & ((iw >= 0) & (iw < wd))[None, :]
            valid += inside
            rows = x[:, ih.clamp(0, h - 1)][:, :, iw.clamp(0, wd - 1)]  # [N, OH, OW, Cw]
            for start in range(0, o, 64):  # bounded memory: [N, OH, OW, 64, Cw] at most
                f = w[start : start + 64, kh, kw]
                xor = (rows[:, :, :, None, :] ^ f[None, None, None]) & cmask
                diff[..., start : start + 64] += _popcount(xor) * inside[None, :, :, None]
    out = valid[None, :, :, None] * channels - 2 * diff
    return out.to(torch.int32).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------- layers
def _channel_mask(channels: int) -> Tensor:
    words = -(-channels // WORD)
    bits = torch.zeros(words * WORD, dtype=torch.int64)
    bits[:channels] = 1
    return (bits.reshape(words, WORD) << _SHIFTS).sum(-1)


class PackedBinaryConv2d(nn.Module):
    """A convolution of binary inputs with binary weights by XNOR and popcount (see the
    module documentation). Built by :func:`pack_binary_` from a frozen XNOR or BinaryNet
    layer; inference only."""

    def __init__(
        self, weight_signs: Tensor, scale: Tensor, bias: Tensor | None, stride: Any,
        padding: Any, dilation: Any, k_map: bool, use_cpp: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        o, c, kh, kw = weight_signs.shape
        self.in_channels, self.out_channels, self.kernel_size = c, o, (kh, kw)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.k_map, self.use_cpp = k_map, use_cpp
        flat = weight_signs.permute(0, 2, 3, 1).reshape(-1, c).float()
        self.register_buffer("weight_words", pack_signs_torch(flat).reshape(o, kh, kw, -1))
        self.register_buffer("channel_mask", _channel_mask(c))
        self.register_buffer("scale", scale.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def _pack(self, x: Tensor, ext: Any) -> Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)
        packed = ext.pack_signs(pixels) if ext is not None else pack_signs_torch(pixels)
        return packed.reshape(n, h, w, -1)

    def dots(self, x: Tensor) -> Tensor:
        """The integer +-1 dot products ``[N, O, OH, OW]``."""
        _, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size, self.stride, self.padding, self.dilation
        )  # fmt: skip
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        ext = extension() if self.use_cpp else None
        packed = self._pack(x.detach().float(), ext)
        if ext is not None:
            return ext.xnor_conv(packed, self.weight_words, self.channel_mask,
                                 self.in_channels, sh, sw, ph, pw, dh, dw, oh, ow)  # fmt: skip
        return xnor_conv_torch(packed, self.weight_words, self.channel_mask, self.in_channels,
                               (sh, sw), (ph, pw), (dh, dw), (oh, ow))  # fmt: skip

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        out = self.dots(x).float() * self.scale.view(1, -1, 1, 1)
        if self.k_map:
            out = out * xnor_k_map(x, self.kernel_size, self.stride, self.padding, self.dilation)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class PackedBinaryLinear(PackedBinaryConv2d):
    """A Linear layer of binary inputs and weights: the 1x1 case of the convolution."""

    def __init__(self, weight_signs: Tensor, scale: Tensor, bias: Tensor | None, k_map: bool,
                 use_cpp: bool = True) -> None:  # fmt: skip
        super().__init__(weight_signs[:, :, None, None], scale, bias, (1, 1), (0, 0), (1, 1),
                         False, use_cpp)  # fmt: skip
        self.linear_k_map = k_map

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        out = self.dots(flat[:, :, None, None])[:, :, 0, 0].float() * self.scale
        if self.linear_k_map:
            out = out * flat.abs().mean(1, keepdim=True)
        out = out if self.bias is None else out + self.bias
        return out.reshape(*lead, -1)


def packed_twin(layer: nn.Module, use_cpp: bool = True) -> nn.Module:
    """The packed binary layer computing what ``layer`` (a quantized Conv2d or Linear with
    1-bit weights and 1-bit inputs) computes.

    Raises:
        ModelError: the layer's weights or inputs are not binary.
    """
    from squeezer.errors import ModelError
    from squeezer.quantization.fake import QuantConv2d, QuantLinear

    if (
        not isinstance(layer, QuantConv2d | QuantLinear)
        or layer.weight_bits != 1
        or (layer.input_bits != 1)
    ):
        raise ModelError("packed binary layers need 1-bit weights and 1-bit inputs")
    with torch.no_grad():
        w = layer.quantized_weight().detach()
    signs = torch.where(w >= 0, 1.0, -1.0)
    scale = w.abs().flatten(1).amax(1)  # |w| is the scale: alpha_c or H
    k_map = layer.method == "xnor"
    if isinstance(layer, QuantLinear):
        return PackedBinaryLinear(signs, scale, layer.bias, k_map, use_cpp)
    if layer.padding_mode != "zeros" or layer.groups != 1:
        raise ModelError("packed binary convolutions need zero padding and groups=1")
    return PackedBinaryConv2d(signs, scale, layer.bias, layer.stride, layer.padding,
                              layer.dilation, k_map, use_cpp)  # fmt: skip


def pack_binary_(model: nn.Module, use_cpp: bool = True) -> list[str]:
    """Replace every quantized layer of ``model`` with binary weights and binary inputs by
    its packed twin (in place, inference only); returns their names."""
    from squeezer.core.modules import set_module
    from squeezer.quantization.qat import quantized_layers

    names = []
    for name, layer in quantized_layers(model):
        if layer.weight_bits == 1 and layer.input_bits == 1:
            set_module(model, name, packed_twin(layer, use_cpp))
            names.append(name)
    return names
