"""Writing a matplotlib figure: atomically (a crash leaves no half-written PNG) and closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from complexif.io import atomic_open


def save_png(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, dpi=120, format="png")
    finally:
        plt.close(fig)
