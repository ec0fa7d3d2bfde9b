"""nginx with WebDAV (PUT/DELETE/MOVE, PROPFIND) serving a cache root: the tests' HTTP remote."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._proc import ServerError, free_port, port_open, require_binary, stop_process, wait_until

__all__ = ["NginxDav", "start_nginx"]

_HINT = "apt-get install --no-install-recommends nginx-light libnginx-mod-http-dav-ext"
_DAV_EXT = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")


@dataclass
class NginxDav:
    """A running nginx: ``/open/`` needs no auth, ``/basic/`` basic auth, ``/bearer/`` a token;
    ``/readonly/`` serves reads and answers 401 to every write (PUT, MOVE, DELETE).

    ``data`` is the document root, so tests can tamper with stored objects directly.
    """

    url: str
    port: int
    data: Path
    user: str
    password: str
    token: str
    access_log: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop nginx (by the pid we started)."""
        stop_process(self.proc)


def start_nginx(root: Path, *, user: str, password: str, token: str) -> NginxDav:
    """Start nginx under ``root`` on a free 127.0.0.1 port; fails loudly if nginx is missing."""
    nginx = require_binary("nginx", _HINT)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    for sub in ("data/open", "data/basic", "data/bearer", "data/readonly", "body", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # {PLAIN} is an nginx htpasswd scheme: no hashing tool needed for a throwaway server.
    (root / "htpasswd").write_text(f"{user}:{{PLAIN}}{password}\n")
    port = free_port()
    load = f"load_module {_DAV_EXT};" if _DAV_EXT.exists() else ""
    # One worker: nginx's MOVE checks "Overwrite: F" and renames inside one event handler, so
    # with a single worker no other request can run between the check and the rename.
    (root / "nginx.conf").write_text(
        f"""{load}
user root;
worker_processes 1;
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    keepalive_requests 100000;
    sendfile on;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{port};
        root {data};
        client_max_body_size 0;
        dav_methods PUT DELETE MOVE;
        # PROPFIND (from the dav_ext module) lets `buildprint cache ls/verify` list ac/.
        dav_ext_methods PROPFIND OPTIONS;
        create_full_put_path on;
        dav_access user:rw group:r all:r;
        location /open/ {{ }}
        location /basic/ {{
            auth_basic "buildprint";
            auth_basic_user_file {root}/htpasswd;
        }}
        location /bearer/ {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
        }}
        location /readonly/ {{
            if ($request_method !~ ^(GET|HEAD|PROPFIND|OPTIONS)$) {{ return 401; }}
        }}
    }}
}}
"""
    )
    log = root / "error.log"
    with (root / "stdout").open("wb") as sink:
        try:
            proc = subprocess.Popen(
                [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ServerError(f"cannot start nginx: {exc}") from exc
    try:
        wait_until(lambda: port_open(port), timeout=20, what="nginx", proc=proc, log=log)
    except BaseException:
        stop_process(proc)
        raise
    return NginxDav(
        url=f"http://127.0.0.1:{port}",
        port=port,
        data=data,
        user=user,
        password=password,
        token=token,
        access_log=root / "access.log",
        proc=proc,
    )
