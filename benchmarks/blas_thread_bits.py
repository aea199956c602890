"""Does NumPy's BLAS give the same bits on 1, 2, 3 and 4 threads? One product per shape
(``a @ b`` and ``a.T @ b``), random float32, compared bit for bit across thread counts
(threadpoolctl). fastcnn's dense layers cut products into fixed single-threaded pieces
(``kernels/blocked_matmul.py``) because the answer is "not always" (docs/benchmarks.md,
"Dense layers on both cores").

    python benchmarks/blas_thread_bits.py
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

#: (m, k, n): SimpleConvNet's dense products, the flowers ones, squares and odd shapes
SHAPES = [(100, 4320, 100), (4320, 100, 100), (100, 100, 4320), (100, 1536, 5), (1536, 10, 5),
          (256, 256, 256), (300, 300, 300), (1000, 64, 500), (128, 2048, 512), (97, 1001, 33),
          (33, 5000, 77)]
THREADS = (1, 2, 3, 4)


def main() -> int:
    for info in threadpool_info():
        print(info["internal_api"], info.get("version"), info.get("architecture"),
              f"{info['num_threads']} threads")
    rng = np.random.default_rng(0)
    differ = 0
    for m, k, n in SHAPES:
        for transposed in (False, True):
            a = rng.standard_normal((k, m) if transposed else (m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            lhs = a.T if transposed else a
            outs = []
            for t in THREADS:
                with threadpool_limits(t, user_api="blas"):
                    outs.append(lhs @ b)
            same = all(np.array_equal(outs[0], o) for o in outs[1:])
            differ += not same
            print(f"{m}x{k} @ {k}x{n} {'a.T' if transposed else 'a'}: {'same' if same else 'DIFFERENT'} bits "
                  f"on {', '.join(map(str, THREADS))} threads")
    print(f"{differ} of {2 * len(SHAPES)} products differ between thread counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
