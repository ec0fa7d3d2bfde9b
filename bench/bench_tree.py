"""Benchmark: tree_digest cold vs warm (memo), and warm vs a bare scandir + stat walk.

Run ``python3 bench/bench_tree.py``. A 100,000-file tree is generated once under
bench/.data/ (gitignored) with old mtimes, so the memo may trust every file. "Cold"
means no memo (every file is read and hashed; the page cache is warm, which favours
the cold run); "warm" means a memo loaded from disk by the previous walk. Contenders
alternate and the best of several rounds is kept.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from buildprint.inputs.tree import TreeMemo, tree_digest

__all__ = ["main"]

DATA = Path(__file__).resolve().parent / ".data"


def make_tree(root: Path, count: int) -> Path:
    """``count`` source-like files of 100 B to 8 KB in a 3-level folder hierarchy."""
    marker = root.with_name(root.name + ".complete")  # outside the tree: not hashed
    if marker.exists():
        return root
    rng = random.Random(7)
    pool = bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz_ ()=:\n    ", k=1 << 20))
    old = 1_600_000_000
    per_dir = 100
    for index in range(count):
        folder = (
            root
            / f"pkg{index // 10_000}"
            / f"sub{index // 1000 % 10}"
            / f"d{index // per_dir % 10}"
        )
        if index % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(0, len(pool) - 8192)
        path = folder / f"module_{index}.py"
        path.write_bytes(pool[start : start + rng.randint(100, 8192)])
        os.utime(path, (old, old))
    marker.write_text("done\n")
    return root


def bare_walk(root: Path) -> int:
    """The floor: every directory listed with os.scandir and every file stat()ed."""
    count = 0
    pending = [os.fsencode(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


def best_of(rounds: int, *contenders: Callable[[], object]) -> list[float]:
    """Best wall time of each contender, alternating them round by round."""
    best = [float("inf")] * len(contenders)
    for _ in range(rounds):
        for index, run in enumerate(contenders):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    root = make_tree(DATA / f"tree-{args.files}", args.files)
    print(f"tree: {root.name} (data ready in {time.perf_counter() - started:.1f} s)")
    memo_path = DATA / f"tree-{args.files}.memo.json"
    memo_path.unlink(missing_ok=True)

    def cold() -> object:
        return tree_digest(root)

    def warm() -> object:
        return tree_digest(root, TreeMemo.load(memo_path))

    seeded = TreeMemo.load(memo_path)
    reference = tree_digest(root, seeded)
    seeded.save()
    assert len(seeded) == reference.files, "every file should be memoised (old mtimes)"
    assert tree_digest(root, TreeMemo.load(memo_path)) == reference
    print(
        f"  {reference.files} files, {reference.size / 1e6:.0f} MB, digest {reference.digest[:16]}…"
    )

    loaded = TreeMemo.load(memo_path)
    print(f"  load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    # Cold against warm first, then warm against the bare walk in rounds of their own:
    # a cold walk streams 400 MB through the CPU caches and would tax whatever runs next.
    t_cold, _ = best_of(args.rounds, cold, lambda: tree_digest(root, loaded))
    t_warm, t_walk = best_of(
        2 * args.rounds, lambda: tree_digest(root, loaded), lambda: bare_walk(root)
    )
    (t_warm_load,) = best_of(args.rounds, warm)
    (t_save,) = best_of(args.rounds, loaded.save)
    print(f"  cold tree_digest (no memo)           {t_cold:6.3f} s")
    print(f"  warm tree_digest (memo in memory)    {t_warm:6.3f} s")
    print(f"  warm tree_digest incl. memo load     {t_warm_load:6.3f} s")
    print(f"  memo save                            {t_save:6.3f} s")
    print(f"  bare scandir + stat walk             {t_walk:6.3f} s")
    print(f"  ratio cold/warm = {t_cold / t_warm:.2f}  (target >= 3)")
    print(f"  ratio cold/warm incl. load = {t_cold / t_warm_load:.2f}")
    print(f"  ratio warm/bare walk = {t_warm / t_walk:.2f}  (target <= 1.5)")
    print(f"  ratio warm incl. load/bare walk = {t_warm_load / t_walk:.2f}")
    print(f"total bench time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
