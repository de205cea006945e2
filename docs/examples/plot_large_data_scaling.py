"""
Large data: a memmapped fit, time against n
===========================================

:class:`fastmetric.LDML_Supervised` with a stochastic solver draws each
minibatch's pairs when it needs them, so ``X`` can be a
:class:`numpy.memmap` on disk and memory holds one minibatch.  Here float32
rows are written to a memmap file and fitted for two epochs with
``n_pairs = 2 n``; the time per epoch should grow linearly with ``n``.  (The
:doc:`performance page </performance>` goes to ten million rows.)
"""

import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

from fastmetric import LDML_Supervised

sizes = [5_000, 10_000, 20_000, 40_000]
d = 16
folder = tempfile.mkdtemp()
times = []
for n in sizes:
    rng = np.random.RandomState(0)
    y = rng.randint(0, 10, n)
    path = os.path.join(folder, f"rows_{n}.f32")
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    X[:] = rng.randn(n, d).astype(np.float32) + 0.5 * y[:, None]
    X.flush()
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    model = LDML_Supervised(solver="adam", n_pairs=2 * n, batch_size=5000, max_iter=2,
                            tol=0, random_state=0, n_jobs=2)
    t0 = time.perf_counter()
    model.fit(X, y)
    times.append((time.perf_counter() - t0) / 2)
    print(f"n = {n:>6}: {times[-1] * 1e3:.1f} ms per epoch, "
          f"output dtype {model.transform(X[:2]).dtype}")
    del X
    os.remove(path)

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.loglog(sizes, times, "o-", label="LDML_Supervised, adam")
ax.loglog(sizes, times[0] * np.asarray(sizes) / sizes[0], ":", color="0.5",
          label="linear in n")
ax.set_xlabel("rows n (memmap, float32, d = 16)")
ax.set_ylabel("seconds per epoch")
ax.legend()
ax.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()
