"""How alike a set's instructions are: the pairwise cosine similarity of their TF-IDF vectors,
for the curated set and for a reference set (the seed instructions) in the same vector space,
so the two distributions can be read against each other (the papers' diversity figure).

TF-IDF needs no model and no download, and measures what a template-driven generator repeats:
shared wording. It does not see paraphrase; an embedding model would, and the result names
its ``method`` so a later one can be told apart.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

METHOD = "tfidf"
# Fixed bins over [0, 1]: the same edges for every set and every run, so histograms compare.
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Similarity:
    """Pairwise cosine similarity within one set of instructions.

    ``n_total`` instructions were given, ``n`` of them compared (a seeded sample when there
    were more than ``max_items``), over ``n_pairs`` = n(n-1)/2 pairs i < j (no instruction
    with itself). ``counts[k]`` pairs fall in ``[edges[k], edges[k+1])`` (the last bin also
    holds 1.0). With fewer than two instructions there are no pairs and the statistics are None.
    """

    method: str
    n_total: int
    n: int
    n_pairs: int
    mean: float | None
    median: float | None
    p90: float | None
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_total": self.n_total,
            "n": self.n,
            "n_pairs": self.n_pairs,
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "edges": list(self.edges),
            "counts": list(self.counts),
        }


@dataclass(frozen=True)
class Diversity:
    curated: Similarity
    reference: Similarity

    def to_dict(self) -> dict[str, Any]:
        return {"curated": self.curated.to_dict(), "reference": self.reference.to_dict()}


def sample_items(items: Sequence[str], max_items: int, seed: int) -> list[str]:
    """At most ``max_items`` of ``items``, drawn with a generator seeded by ``seed`` and kept in
    their original order; all of them when there are few enough."""
    if max_items < 2:
        raise ValueError(f"max_items must be at least 2 (one pair), got {max_items}")
    if len(items) <= max_items:
        return list(items)
    # Each set draws from its own generator so the curated sample does not depend on the
    # reference's size (or the other way round).
    keep = sorted(random.Random(seed).sample(range(len(items)), max_items))
    return [items[i] for i in keep]


def _vectorise(texts: list[str]) -> Any:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Unigrams and bigrams: bigrams catch repeated phrasing ("in fewer than", "wrap your
    # answer") that single words share with unrelated instructions. Sublinear tf keeps a word
    # repeated in one long instruction from dominating its vector. No stop-word list: IDF
    # already discounts words every instruction has, and a list would be one more choice to
    # justify. Rows are L2-normalised, so a dot product is the cosine.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, norm="l2")
    try:
        return vectorizer.fit_transform(texts)
    except ValueError:
        # No text has a single word token (all empty, say): every vector is zero, and so is
        # every similarity, rather than a crash in the analysis stage.
        return csr_matrix((len(texts), 1))


def _similarity(matrix: Any, n_total: int) -> Similarity:
    import numpy as np

    n = matrix.shape[0]
    edges = tuple(float(e) for e in np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1))
    if n < 2:
        return Similarity(METHOD, n_total, n, 0, None, None, None, edges, (0,) * HISTOGRAM_BINS)
    cos = (matrix @ matrix.T).toarray()
    i, j = np.triu_indices(n, k=1)
    # TF-IDF weights are non-negative, so cosines lie in [0, 1] up to rounding.
    pairs = np.clip(cos[i, j], 0.0, 1.0)
    counts, _ = np.histogram(pairs, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    median, p90 = (float(v) for v in np.percentile(pairs, [50, 90]))
    return Similarity(
        method=METHOD,
        n_total=n_total,
        n=n,
        n_pairs=len(pairs),
        mean=float(pairs.mean()),
        median=median,
        p90=p90,
        edges=edges,
        counts=tuple(int(c) for c in counts),
    )


def pairwise_similarity(
    curated: Sequence[str], reference: Sequence[str], *, max_items: int, seed: int
) -> Diversity:
    """Pairwise cosine similarity within ``curated`` and within ``reference``, each sampled to
    at most ``max_items`` instructions with ``seed``; the TF-IDF vocabulary and weights are
    fitted on both samples together, so a shared phrase weighs the same in either set."""
    cur = sample_items(curated, max_items, seed)
    ref = sample_items(reference, max_items, seed)
    matrix = _vectorise(cur + ref)
    return Diversity(
        curated=_similarity(matrix[: len(cur)], len(curated)),
        reference=_similarity(matrix[len(cur) :], len(reference)),
    )
