"""A throwaway Ceph cluster (one mon, one memstore OSD, no cephx) with radosgw for S3 tests."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import (
    ServerError,
    free_port,
    port_open,
    require_binary,
    run_checked,
    stop_process,
    wait_until,
)

__all__ = ["RadosGateway", "start_radosgw"]

_HINT = "apt-get install --no-install-recommends radosgw ceph-mon ceph-osd ceph-common"


@dataclass
class RadosGateway:
    """A running radosgw: S3 endpoint and the keys of a user created for the tests."""

    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    conf: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop radosgw, then the OSD, then the monitor (reverse start order)."""
        for proc in reversed(self.procs):
            stop_process(proc)


def start_radosgw(root: Path) -> RadosGateway:
    """Start mon + OSD + radosgw under ``root``; ~15 s cold. Fails loudly if Ceph is missing."""
    mon = require_binary("ceph-mon", _HINT)
    osd = require_binary("ceph-osd", _HINT)
    rgw = require_binary("radosgw", _HINT)
    ceph = require_binary("ceph", _HINT)
    admin = require_binary("radosgw-admin", _HINT)
    monmaptool = require_binary("monmaptool", _HINT)
    authtool = require_binary("ceph-authtool", _HINT)

    root.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log", "mon", "osd"):
        (root / sub).mkdir(exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = free_port(), free_port()
    conf = root / "ceph.conf"
    conf.write_text(
        f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc secure
ms bind msgr2 = false
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
keyring = {root}/keyring
mon data = {root}/mon/$cluster-$id
osd data = {root}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd max object name len = 460
osd max object namespace len = 64
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw thread pool size = 64
debug rgw = 0
"""
    )
    env = {"CEPH_CONF": str(conf)}
    os.environ.setdefault("CEPH_ARGS", "")
    run_checked(
        [
            authtool,
            "--create-keyring",
            str(root / "keyring"),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ],
        what="ceph-authtool",
    )
    monmap = root / "monmap"
    run_checked(
        [
            monmaptool,
            "--create",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v1:127.0.0.1:{mon_port}]",
            str(monmap),
        ],
        what="monmaptool",
    )
    run_checked(
        [mon, "-c", str(conf), "--mkfs", "-i", "a", "--monmap", str(monmap)], what="ceph-mon --mkfs"
    )
    gw = RadosGateway(
        endpoint=f"http://127.0.0.1:{rgw_port}", access_key="", secret_key="", root=root, conf=conf
    )
    try:
        gw.procs.append(
            _spawn([mon, "-c", str(conf), "-f", "-i", "a"], root / "log" / "mon-stdout")
        )
        wait_until(
            lambda: port_open(mon_port),
            timeout=30,
            what="ceph-mon",
            proc=gw.procs[0],
            log=root / "log" / "mon.a.log",
        )
        # The OSD's first command carries a zero fsid if it starts while the monitor is still
        # electing itself ("wrong fsid" and exit): wait until the monitor answers commands.
        wait_until(
            lambda: bool(
                run_checked([ceph, "-c", str(conf), "mon", "stat"], what="ceph mon stat", env=env)
            ),
            timeout=30,
            what="ceph-mon quorum",
            proc=gw.procs[0],
            log=root / "log" / "mon.a.log",
        )
        # No `ceph osd new`: the OSD registers itself at boot. Pre-registering it made about
        # one start in two fail with "wrong fsid" on memstore.
        osd_uuid = str(uuid.uuid4())
        osd_id = "0"
        (root / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
        run_checked(
            [osd, "-c", str(conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
            what="ceph-osd --mkfs",
        )

        def osd_up() -> bool:
            out = run_checked(
                [ceph, "-c", str(conf), "osd", "stat", "-f", "json"], what="ceph osd stat", env=env
            )
            return int(json.loads(out).get("num_up_osds", 0)) >= 1

        # Pacific's OSD sometimes sends its first monitor command before it has the monmap
        # (zero fsid, "wrong fsid", exit 1) even with the monitor up; a restart succeeds.
        for attempt in range(3):
            osd_proc = _spawn(
                [osd, "-c", str(conf), "-f", "-i", osd_id], root / "log" / f"osd-stdout.{attempt}"
            )
            gw.procs.append(osd_proc)
            try:
                wait_until(
                    osd_up,
                    timeout=60,
                    what="ceph-osd",
                    proc=osd_proc,
                    log=root / "log" / f"osd.{osd_id}.log",
                )
                break
            except ServerError:
                if osd_proc.poll() is None or attempt == 2:
                    raise
                gw.procs.remove(osd_proc)
        rgw_proc = _spawn(
            [rgw, "-c", str(conf), "-f", "-n", "client.rgw.test"], root / "log" / "rgw-stdout"
        )
        gw.procs.append(rgw_proc)
        wait_until(
            lambda: port_open(rgw_port),
            timeout=90,
            what="radosgw",
            proc=rgw_proc,
            log=root / "log" / "rgw-stdout",
        )
        gw.access_key = "BPTESTACCESSKEY0001"
        gw.secret_key = "bp-s3-secret-" + uuid.uuid4().hex
        run_checked(
            [
                admin,
                "-c",
                str(conf),
                "user",
                "create",
                "--uid",
                "buildprint",
                "--display-name",
                "buildprint tests",
                "--access-key",
                gw.access_key,
                "--secret-key",
                gw.secret_key,
            ],
            what="radosgw-admin user create",
        )
    except BaseException:
        gw.stop()
        raise
    return gw


def _spawn(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        try:
            return subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            raise ServerError(f"cannot start {argv[0]}: {exc}") from exc
