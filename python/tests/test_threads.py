"""Threads searching one index at once (the GIL is released) get the serial answers."""
import threading

import numpy as np

import hive_gpu


def test_concurrent_search_equals_serial(rng):
    ix = hive_gpu.Index(64, metric="l2")
    ix.add(rng.standard_normal((5000, 64)).astype(np.float32))
    queries = [rng.standard_normal((n, 64)).astype(np.float32) for n in (1, 7, 100, 300, 1, 50, 200, 3)]
    serial = [ix.search(q, 10) for q in queries]
    results = {}
    errors = []

    def worker(t):
        try:
            for rep in range(5):
                for j, q in enumerate(queries):
                    if (j + t) % 2 == rep % 2:
                        results[(t, rep, j)] = ix.search(q, 10)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert results
    for (t, rep, j), (D, I) in results.items():
        np.testing.assert_array_equal(I, serial[j][1])
        np.testing.assert_array_equal(D, serial[j][0])


def test_search_while_adding(rng):
    ix = hive_gpu.Index(16)
    base = rng.standard_normal((1000, 16)).astype(np.float32)
    ix.add(base)
    q = base[:20]
    stop = threading.Event()
    bad = []

    def searcher():
        while not stop.is_set():
            D, I = ix.search(q, 1)
            if not (I[:, 0] == np.arange(20)).all():
                bad.append(I)

    th = [threading.Thread(target=searcher) for _ in range(2)]
    for t in th:
        t.start()
    for _ in range(20):
        ix.add(rng.standard_normal((100, 16)).astype(np.float32) + 100.0)
    stop.set()
    for t in th:
        t.join()
    assert not bad and len(ix) == 3000
