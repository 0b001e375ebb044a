"""Distances between embeddings: the one place they are computed (numpy only).

Embeddings are unit vectors, so the squared L2 distance is ``2 - 2 cos`` and lies in
[0, 4]; a model's ``verification_threshold`` is a squared L2 distance.
"""

from __future__ import annotations

import numpy as np

from facelivenet.errors import InputError


def squared_l2_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise squared Euclidean distance.

    Args:
        a, b: (P, D) arrays (or (D,) for one pair).

    Returns:
        (P,) float64 distances (a scalar array for 1-D inputs).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding arrays differ in shape: {a.shape} vs {b.shape}")
    return np.sum(np.square(a - b), axis=-1)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - cos(a, b)`` in [0, 2]; (P, D) inputs → (P,)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding arrays differ in shape: {a.shape} vs {b.shape}")
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def squared_l2_matrix(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(N, K) squared L2 distances between N query and K reference unit embeddings, in [0, 4]."""
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    if q.ndim == 1:
        q = q[None, :]
    if r.ndim == 1:
        r = r[None, :]
    if q.shape[1] != r.shape[1] or r.shape[0] == 0:
        raise InputError(f"cannot compare embeddings of shape {q.shape} with a reference of shape {r.shape}")
    d = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * q @ r.T
    return np.clip(d, 0.0, 4.0)


def identity_distances(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) squared L2 distance from each of N embeddings (N, D) to the nearest of K (K, D).

    Both are unit vectors, so the distance is in [0, 4]; compare it with the model's
    ``verification_threshold``.
    """
    q = np.asarray(embeddings)
    if q.ndim == 2 and q.shape[0] == 0:
        r = np.asarray(reference)
        if r.ndim == 2 and (r.shape[0] == 0 or r.shape[1] != q.shape[1]):
            squared_l2_matrix(np.zeros((1, q.shape[1])), r)  # raises the shape error
        return np.zeros((0,), np.float32)
    return squared_l2_matrix(embeddings, reference).min(axis=1).astype(np.float32)
