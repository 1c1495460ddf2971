"""The numbers of the conquer step's iterative merging, defined once for both merge loops.

Upstream (``granularity_divide_and_conquer/iterative_merging.py`` of yujunwei04/UnSAMv2) computes the cosine
similarity of two L2-normalised features with float32 ``torch.dot``, whose last bit depends on the BLAS's
summation order. Ties and threshold tests must come out the same whatever the BLAS or the batching, so the
similarity is defined here so that it does not depend on either (the transcription in
``tests/reference/reference_merge.py`` uses the same definitions):

* a norm is sqrt of numpy's float32 ``add.reduce`` of the squares (numpy's pairwise loop, the same for a lone
  vector and for a matrix row; :func:`pairwise_plan` spells its summation order out);
* a normalised feature u = x / max(||x||, ``EPS``) is quantised to integers q = rint(u * ``QUANT``), so
  |q| <= 2**26 and every partial sum of q_a . q_b is an integer below 2**53 (Cauchy-Schwarz): float64 computes
  it exactly in any order (einsum, BLAS matvec, chunked, SIMD lanes);
* the similarity is float32(q_a . q_b * 2**-52). The merge loops keep the key float32(q_a . q_b) =
  similarity * 2**52 exactly (power-of-two scaling commutes with rounding) and compare it with
  theta * ``DOT_UNSCALE`` instead of rescaling every similarity.

The quantisation step (2**-27 per component) is far below the float32 rounding of a similarity, so upstream's
float32 ``torch.dot`` differs from this only in the last bits.

This module holds the numpy implementation (the Python loop of ``merge.py`` and the start-up of both loops).
The compiled loop (``merge_kernel.py``) computes the same numbers element by element, with these constants.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DOT_UNSCALE",
    "EPS",
    "QUANT",
    "dots_with",
    "initial_dots",
    "pairwise_plan",
    "quantize_vector",
    "quantized_unit_rows",
]

EPS = np.float32(1e-12)  # F.normalize's default eps: denominator = max(norm, eps)
QUANT = np.float32(2.0**26)  # |q| <= 2**26 => |partial sums of q_a . q_b| < 2**53 (Cauchy-Schwarz)
DOT_UNSCALE = 2.0**52  # similarity = q_a . q_b * 2**-52
GATHER_CHUNK = 64  # rows (x C float64) gathered at once; 64 x 768 x 8 B = 384 KiB
ROW_BLOCK = 64  # rows normalised at once at start-up
PAIRWISE_BLOCKSIZE = 128  # numpy's PW_BLOCKSIZE


def quantized_unit_rows(x: np.ndarray, out: np.ndarray) -> None:
    """Write the quantised L2-normalised rows of float32 ``x`` (n, C) into ``out`` (float64 integers).

    The row-wise ``add.reduce`` runs numpy's pairwise loop on each contiguous row, the same loop the reference
    runs on a lone vector (tests/discovery/test_merge.py checks this bit for bit). Blocks of rows keep the
    temporaries in cache.
    """
    for start in range(0, len(x), ROW_BLOCK):
        block = x[start : start + ROW_BLOCK]
        norms = np.sqrt(np.add.reduce(block * block, axis=1))
        unit = block / np.maximum(norms, EPS)[:, None]
        unit *= QUANT
        np.rint(unit, out=out[start : start + ROW_BLOCK])


def quantize_vector(mean: np.ndarray, out: np.ndarray) -> None:
    """Write rint(mean / max(||mean||, eps) * 2**26) of a float32 vector into ``out`` (float64 integers)."""
    norm = np.sqrt(np.add.reduce(mean * mean))
    np.rint(mean / max(norm, EPS) * QUANT, out=out)


def initial_dots(quant: np.ndarray, h: int, w: int, exists: np.ndarray) -> np.ndarray:
    """float32-rounded integer dot products q_a . q_b of the initial 4-connected edges of an h x w grid.

    ``exists`` selects the existing edges among the candidates (c - 1, c), (c - W, c) for c = 0, 1, ...
    (``merge._initial_edges``), in that order.
    """
    n = h * w
    dots = np.zeros((n, 2), dtype=np.float64)
    # Consecutive rows in raster order are (c - 1, c) (pairs across a row end are dropped by ``exists``);
    # rows w apart are (c - W, c). Exact integer sums, so einsum's summation order does not matter.
    dots[1:, 0] = np.einsum("ij,ij->i", quant[:-1], quant[1:])
    dots[w:, 1] = np.einsum("ij,ij->i", quant[:-w], quant[w:])
    return dots[exists].astype(np.float32)


def dots_with(quant: np.ndarray, neighbour_rows: np.ndarray, qnew: np.ndarray) -> np.ndarray:
    """float32-rounded exact dot products of ``qnew`` with the given rows of ``quant``.

    Gathers in chunks that stay in the L2 cache: a high-degree cluster (hundreds of neighbours) would otherwise
    copy megabytes out to memory and read them back, which costs more than the arithmetic.
    """
    if len(neighbour_rows) <= GATHER_CHUNK:
        return (quant[neighbour_rows] @ qnew).astype(np.float32)
    return np.concatenate(
        [
            (quant[neighbour_rows[k : k + GATHER_CHUNK]] @ qnew).astype(np.float32)
            for k in range(0, len(neighbour_rows), GATHER_CHUNK)
        ]
    )


def pairwise_plan(n: int) -> np.ndarray:
    """numpy's float32 pairwise summation order for n terms (``FLOAT_pairwise_sum``, loops_utils.h.src).

    numpy sums n <= 128 terms in one block (``_pairwise_sum``'s leaf loop), and otherwise the first
    n // 2 (rounded down to a multiple of 8) and the rest separately, then adds the two. The plan is that
    recursion in postfix order: rows (start, length) sum a block and push it; rows (-1, -1) replace the top
    two sums by their sum. The compiled loop follows it (built here, not recursively in numba, whose on-disk
    cache cannot load recursive functions).
    """
    ops: list[tuple[int, int]] = []

    def visit(start: int, length: int) -> None:
        if length <= PAIRWISE_BLOCKSIZE:
            ops.append((start, length))
            return
        half = length // 2
        half -= half % 8
        visit(start, half)
        visit(start + half, length - half)
        ops.append((-1, -1))

    visit(0, n)
    return np.array(ops, dtype=np.int64).reshape(-1, 2)
