"""Dynamic networks and other acceleration (family Y): fast convolution algorithms and, as
they land, conditional computation.

    sq.convert_(model, sq.dynamic.Winograd())   # 3x3 stride-1 convs by F(2x2, 3x3)
    sq.convert_(model, sq.dynamic.FFTConv())    # convs in the Fourier domain
"""

from __future__ import annotations

from squeezer.dynamic.fastconv import FFTConv, Winograd

__all__ = ["FFTConv", "Winograd"]
