"""Shared by the tiles tests: a `provenance serve --http --tiles-dir` process, fetching over HTTP, nginx."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /checkpoint {{
            default_type "text/plain; charset=utf-8";
            add_header Cache-Control "no-cache";
        }}
        location ~ "\\.p/[0-9]+$" {{
            add_header Cache-Control "public, max-age=10";
        }}
        location /tile/ {{
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
    }}
}}
"""
"""A throwaway nginx serving a tiles directory: the configuration docs/operations.md ("Tiles") shows."""


def fetch(url: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    """``(status, body, headers)`` of one request; a 4xx/5xx is an answer, not an exception."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers.items())


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def nginx_serving(nginx: str, root: Path, run: Path) -> Iterator[str]:
    """Debian's nginx serving ``root`` on a free loopback port; yields its base URL."""
    run.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        port = free_port()
        conf = run / "nginx.conf"
        conf.write_text(NGINX_CONF.format(run=run, port=port, root=root))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(run), "-e", str(run / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                fetch(base + "/checkpoint")
                up = True
                break
            except OSError:
                time.sleep(0.05)
        if up:
            try:
                yield base
            finally:
                proc.terminate()
                proc.wait(10)
            return
        proc.kill()
        proc.wait(10)
    raise RuntimeError(f"nginx did not start: {(run / 'error.log').read_text(errors='replace')}")
