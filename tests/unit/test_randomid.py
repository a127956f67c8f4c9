"""Random ids drawn from the pool never repeat: across threads, and in a forked child against its parent."""

from __future__ import annotations

import subprocess
import sys
import threading

from wahub.domain import randomid
from wahub.domain.randomid import POOL_BYTES, RandomPool


def test_ids_from_many_threads_are_distinct_and_of_the_asked_length() -> None:
    pool = RandomPool()
    found: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(pool.hex(10) for _ in range(2_000))  # several refills of the pool per thread

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    ids = [i for out in found for i in out]
    assert len(ids) == 16_000 and len(set(ids)) == len(ids)
    assert all(len(i) == 20 and int(i, 16) >= 0 for i in ids)


def test_a_draw_larger_than_the_pool_is_served_whole() -> None:
    assert len(RandomPool().hex(POOL_BYTES + 5)) == 2 * (POOL_BYTES + 5)


def test_a_forked_child_does_not_hand_out_its_parents_bytes() -> None:
    script = (
        "import os, sys\n"
        "from wahub.domain.randomid import random_hex\n"
        "random_hex(10)  # the pool is filled\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, random_hex(10).encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "child = os.read(r, 64).decode()\n"
        "print(child, random_hex(10))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    child, parent = done.stdout.split()
    assert len(child) == len(parent) == 20 and child != parent


def test_the_module_pool_serves_random_hex() -> None:
    assert randomid.random_hex(8) != randomid.random_hex(8)
