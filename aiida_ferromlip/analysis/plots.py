"""The one way the plugin turns a matplotlib figure into PNG bytes (for SinglefileData outputs)."""

from __future__ import annotations

import io


def figure_png(figure, dpi: int = 100) -> bytes:
    """Lay out ``figure``, render it as PNG, and close it (figures left open accumulate in long-lived workers)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()
