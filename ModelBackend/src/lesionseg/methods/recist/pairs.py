"""Pairs for co-segmentation training: lesion embeddings -> k-means clusters -> partners within a cluster.

As in the paper, lesions are embedded with a trained encoder (global-average-pooled bottleneck of the
FCN stage), clustered with k-means, and each training crop is paired with a crop of *another lesion* of
its cluster. The paper used 200 clusters for 32,735 DeepLesion lesions (~160 lesions per cluster); with
~100 lesions here that ratio would give a single cluster, so :func:`default_clusters` keeps about
:data:`LESIONS_PER_CLUSTER` lesions per cluster instead. k-means is ``scipy.cluster.vq.kmeans2`` with
k-means++ seeding and a fixed seed (scikit-learn is not a dependency).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

from ...errors import InputError

log = logging.getLogger(__name__)
LESIONS_PER_CLUSTER = 10


def default_clusters(n_lesions: int) -> int:
    """Number of k-means clusters for ``n_lesions`` lesions (at least 2, about 10 lesions each)."""
    return max(2, int(round(n_lesions / LESIONS_PER_CLUSTER)))


def embeddings(net: torch.nn.Module, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    """``(N, C)`` float32 embeddings (``net.embed``) of ``(N, C_in, S, S)`` network inputs, eval mode, on the
    network's device."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch])).to(device)
            out.append(net.embed(x).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def cluster_lesions(emb: np.ndarray, lesion_ids: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """k-means on per-lesion mean embeddings (standardised per feature) -> ``{lesion_id: cluster}``.

    Args:
        emb: ``(N, C)`` embeddings of N samples. lesion_ids: the lesion of each sample (slices of one
            lesion share its cluster). k: number of clusters (reduced to the number of lesions). seed: RNG seed.
    """
    ids = list(dict.fromkeys(lesion_ids))
    if len(emb) != len(lesion_ids) or not ids:
        raise InputError("one lesion id per embedding row is needed")
    index = {name: i for i, name in enumerate(ids)}
    rows = np.array([index[name] for name in lesion_ids])
    means = np.stack([emb[rows == i].mean(axis=0) for i in range(len(ids))]).astype(np.float64)
    means = (means - means.mean(axis=0)) / (means.std(axis=0) + 1e-6)
    k = int(min(max(k, 1), len(ids)))
    _, labels = kmeans2(means, k, minit="++", seed=seed)
    sizes = np.bincount(labels, minlength=k)
    log.info("recist-coseg: %d lesions in %d clusters, sizes %s", len(ids), k, sorted(sizes.tolist(), reverse=True))
    return {name: int(labels[i]) for i, name in enumerate(ids)}


def partners(lesion_ids: Sequence[str], clusters: dict[str, int] | None, rng: np.random.Generator) -> np.ndarray:
    """For each sample, the index of a partner sample: a slice of another lesion in the same cluster
    (``clusters`` given) or of any other lesion (``clusters=None``, random pairing). A lesion alone in
    its cluster is paired with a slice of itself."""
    ids = np.asarray(lesion_ids)
    groups = np.array([clusters[name] for name in ids]) if clusters is not None else np.zeros(len(ids), int)
    out = np.empty(len(ids), int)
    for i in range(len(ids)):
        candidates = np.flatnonzero((groups == groups[i]) & (ids != ids[i]))
        if len(candidates) == 0:
            candidates = np.flatnonzero(ids == ids[i])
        out[i] = rng.choice(candidates)
    return out


def stratified_split(lesion_ids: Sequence[str], clusters: dict[str, int], fraction: float,
                     rng: np.random.Generator) -> set[str]:
    """A cluster-stratified subset of lesions: about ``fraction`` of each cluster's lesions (at least
    one from every cluster with two or more lesions). Returns the chosen lesion ids."""
    if not 0.0 < fraction < 1.0:
        raise InputError("fraction must be in (0, 1)")
    chosen: set[str] = set()
    names = list(dict.fromkeys(lesion_ids))
    for c in sorted(set(clusters[n] for n in names)):
        members = [n for n in names if clusters[n] == c]
        if len(members) < 2:
            continue
        take = max(1, int(round(fraction * len(members))))
        chosen.update(rng.choice(members, size=take, replace=False).tolist())
    return chosen
