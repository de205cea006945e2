"""The demo's picture: a readable grid, axes that ignore a few far points."""
import numpy as np
import pytest

from fastmetric._cli.demo import _robust_limits, plot_embeddings


def test_robust_limits_ignore_far_points():
    rng = np.random.RandomState(0)
    values = np.r_[rng.randn(500), 1e6, -1e6]
    lo, hi = _robust_limits(values)
    assert -5 < lo < -1 and 1 < hi < 5
    # A constant column still gets a non-empty range.
    lo, hi = _robust_limits(np.full(10, 3.0))
    assert lo < 3.0 < hi


def test_plot_embeddings_grid(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(10), 20)
    embeddings = [(f"m{i}", rng.randn(200, 4 + i % 3)) for i in range(14)]
    scores = {name: 0.9 for name, _ in embeddings}
    out = tmp_path / "grid.png"
    width, height = plot_embeddings(out, embeddings, y, scores)
    image = imread(out)
    assert image.shape[:2] == (height, width)
    # 14 panels on 5 columns: 3 rows, each panel at least 300 pixels wide and tall.
    assert width >= 5 * 300 and height >= 3 * 300


def test_plot_embeddings_rejects_nothing_to_draw(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no embeddings"):
        plot_embeddings(tmp_path / "x.png", [], np.arange(3))
