"""Benchmark: fetch 200 cached wheels with RemoteCache vs plain concurrent GETs (nginx and S3).

Starts nginx (WebDAV) and Ceph radosgw on 127.0.0.1 with the test helpers, publishes 200 random
100-500 KB blobs as signed records, then times, in the same run and best of N:
  * RemoteCache.fetch_many into a fresh local store (verified, stored, records written), and
    lookup_many (concurrent GETs, Ed25519 checks) + fetch_many together;
  * plain concurrent httpx GETs / boto3 get_object calls of the same blobs written to files;
  * the remote layer alone (Remote.get_blob: streamed, verified, renamed; no local store).
The variants run interleaved, round after round. The ratio is plain time / that time (1.0 = no
overhead; target >= 0.8 for fetch_many), from the best rounds and as the median per round.

Run: python3 bench/bench_fetch.py [--count 200] [--jobs 16] [--rounds 7] [--skip-s3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buildprint.signature.canonical import digest_bytes
from buildprint.store import open_remote
from buildprint.store.cache import RemoteCache
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact
from buildprint.store.signing import generate_key, load_signing_key
from tests.support.servers.nginx import start_nginx
from tests.support.servers.radosgw import start_radosgw

__all__ = ["main"]


def _records(local: LocalStore, count: int) -> list[ActionRecord]:
    rng = random.Random(42)
    out = []
    for i in range(count):
        data = os.urandom(rng.randint(100_000, 500_000))
        sha = local.put_blob_bytes(data)
        sig = digest_bytes(f"bench-{i}-{sha}".encode())
        out.append(
            ActionRecord(
                signature=sig,
                name=f"pkg{i}",
                version="1.0",
                manifest={"signature": sig},
                artifacts=(Artifact(f"pkg{i}-1.0-py3-none-any.whl", sha, len(data), sha),),
            )
        )
    return out


def _timed(run: Callable[[Path], None], work: Path) -> float:
    # Targets are removed only after the last round: ext4 without a journal (as on the CI
    # VMs) will not reuse an inode freed less than 30 s before, and scans past each one, so
    # a round right after a deletion pays for it in proportion to the files it creates.
    target = work / f"t{time.monotonic_ns()}"
    target.mkdir()
    # Each round starts with nothing left to write back from the one before: a flush inside
    # the timed window (fetch_many's) would otherwise also pay for the other variants' files.
    os.sync()
    start = time.perf_counter()
    run(target)
    return time.perf_counter() - start


def _compare(
    label: str,
    url: str,
    records: list[ActionRecord],
    public: str,
    plain: Callable[[Path], None],
    *,
    jobs: int,
    rounds: int,
    work: Path,
) -> None:
    total = sum(a.size for r in records for a in r.artifacts)

    # One remote for all rounds, like one CLI run: client set-up is not what is measured.
    remote = open_remote(url, writable=False)

    def cache_fetch(target: Path, *, with_lookup: bool) -> None:
        cache = RemoteCache([remote], LocalStore(target), [public], None, jobs=jobs)
        if with_lookup:
            found = cache.lookup_many([r.signature for r in records], jobs=jobs)
            wanted = [found[r.signature] for r in records if r.signature in found]
        else:
            wanted = records
        done = cache.fetch_many(wanted, jobs=jobs)
        assert len(done) == len(records), cache.problems
        cache.local.close()

    def verified_download(target: Path) -> None:
        # The remote layer alone: streamed, sha256-verified, renamed into place; no local store.
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda a: remote.get_blob(a.sha256, target / a.sha256), artifacts))

    artifacts = [a for r in records for a in r.artifacts]
    variants: dict[str, Callable[[Path], None]] = {
        "plain GETs": plain,
        "verified get_blob": verified_download,
        "RemoteCache.fetch_many": lambda t: cache_fetch(t, with_lookup=False),
        "lookup_many + fetch_many": lambda t: cache_fetch(t, with_lookup=True),
    }
    # Rounds interleave the variants, so a burst of load on a shared machine hits them all
    # alike; each is then judged by its best round and by the median of its per-round ratios.
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(_timed(run, work))
    mb = total / 1e6
    print(f"{label}: {len(records)} blobs, {mb:.1f} MB, jobs={jobs}, {rounds} interleaved rounds")
    print(f"  {'':26s} {'best':>8s} {'MB/s':>7s} {'ratio':>6s} {'median ratio':>13s}")
    plain_times = times["plain GETs"]
    for name, seconds in times.items():
        best = min(seconds)
        ratio = min(plain_times) / best
        per_round = statistics.median(p / t for p, t in zip(plain_times, seconds, strict=True))
        print(f"  {name:26s} {best:7.3f}s {mb / best:7.1f} {ratio:6.2f} {per_round:13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bp-bench-"))
    servers: list[Any] = []
    try:
        nginx = start_nginx(work / "nginx", user="u", password="p", token="t")
        servers.append(nginx)
        publisher_root = work / "publisher"
        generate_key(publisher_root)
        key = load_signing_key(publisher_root)
        assert key is not None
        local = LocalStore(publisher_root)
        records = _records(local, args.count)
        blobs = [(a.sha256, a.size) for r in records for a in r.artifacts]

        http_url = f"{nginx.url}/open/bench"
        publisher = RemoteCache([open_remote(http_url, writable=True)], local, [], key, jobs=16)
        for record in records:
            publisher.push(record)
        client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

        def plain_http(target: Path) -> None:
            def one(item: tuple[str, int]) -> None:
                with (
                    client.stream("GET", f"{http_url}/cas/{item[0]}") as resp,
                    open(target / item[0], "wb") as out,
                ):
                    for chunk in resp.iter_bytes(1 << 20):
                        out.write(chunk)

            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(one, blobs))

        _compare(
            "nginx WebDAV",
            http_url,
            records,
            key.public_id,
            plain_http,
            jobs=args.jobs,
            rounds=args.rounds,
            work=work,
        )

        if not args.skip_s3:
            gw = start_radosgw(work / "ceph")
            servers.append(gw)
            os.environ.update(
                BUILDPRINT_S3_ENDPOINT=gw.endpoint,
                AWS_ACCESS_KEY_ID=gw.access_key,
                AWS_SECRET_ACCESS_KEY=gw.secret_key,
                AWS_DEFAULT_REGION="us-east-1",
            )
            s3 = boto3.client(
                "s3",
                endpoint_url=gw.endpoint,
                region_name="us-east-1",
                config=boto3.session.Config(max_pool_connections=64),
            )
            s3.create_bucket(Bucket="bench")
            s3_url = "s3://bench/cache"
            publisher = RemoteCache([open_remote(s3_url, writable=True)], local, [], key, jobs=16)
            for record in records:
                publisher.push(record)

            def plain_s3(target: Path) -> None:
                def one(item: tuple[str, int]) -> None:
                    body = s3.get_object(Bucket="bench", Key=f"cache/cas/{item[0]}")["Body"]
                    with open(target / item[0], "wb") as out:
                        while chunk := body.read(1 << 20):
                            out.write(chunk)

                with ThreadPoolExecutor(args.jobs) as pool:
                    list(pool.map(one, blobs))

            _compare(
                "Ceph radosgw S3",
                s3_url,
                records,
                key.public_id,
                plain_s3,
                jobs=args.jobs,
                rounds=args.rounds,
                work=work,
            )
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
