"""`make run`'s launcher: starts PostgreSQL, Redis and the Procfile processes, serves the API,
and on Ctrl-C stops every process it started; a second start reuses the data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(var_dir: Path, port: int, pg_port: int, redis_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K2_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(
        K2_VAR_DIR=str(var_dir),
        PORT=str(port),
        K2_DEV_PG_PORT=str(pg_port),
        K2_DEV_REDIS_PORT=str(redis_port),
        K2_PROCFILE_ONLY="web,worker,beat",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "k2.devstack", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_ready(port: int, proc: subprocess.Popen[str], timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("stack did not become ready")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop(proc: subprocess.Popen[str]) -> tuple[list[int], str]:
    tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, _ = proc.communicate(timeout=60)
    return tree, out


@pytest.mark.slow
def test_serve_starts_everything_and_ctrl_c_leaves_no_process(tmp_path):
    port, pg_port, redis_port = _free_port(), _free_port(), _free_port()
    proc = _start(tmp_path, port, pg_port, redis_port)
    try:
        _wait_ready(port, proc)
        login = httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=5)
        assert login.status_code == 200
        not_found = httpx.get(f"http://127.0.0.1:{port}/v1/nope", timeout=5)
        assert not_found.status_code == 404
        assert not_found.json()["error"]["code"] == "NOT_FOUND"

        # A second `make run` on the same data refuses, and leaves the running stack alone
        # (it used to stop the first one's PostgreSQL as "left running by an earlier run").
        second = _start(tmp_path, port, pg_port, redis_port)
        out2, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        assert f"another `make run` (pid {proc.pid})" in out2
        assert "stopping a PostgreSQL" not in out2
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        tree, out = _stop(proc)
    assert "trader@k2.local" in out
    assert "admin@k2.local" in out
    assert "/v1/docs/" in out
    assert len(tree) >= 4  # postgres, redis, honcho and its processes
    time.sleep(0.5)
    assert [pid for pid in tree if _alive(pid)] == []

    # Second run: data reused (no initdb), ready in seconds.
    proc = _start(tmp_path, port, pg_port, redis_port)
    try:
        elapsed = _wait_ready(port, proc)
    finally:
        tree, out = _stop(proc)
    assert "initialising PostgreSQL" not in out
    assert [pid for pid in tree if _alive(pid)] == []
    assert elapsed < 30


_SHOW_DURABILITY = """
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)) as db:
    pg = db.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')").fetchone()
aof = redis.Redis.from_url(os.environ["REDIS_URL"]).config_get("appendonly")["appendonly"]
print("durability:", *pg, aof)
"""


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], "durability: off off no"), (["--durable"], "durability: on on yes")],
    ids=["tests", "benchmarks"],
)
def test_run_commits_as_in_production_only_when_asked(flags, expected):
    """`make test`'s throwaway servers skip flushing; `make bench`'s (`--durable`) flush as
    production does, so a benchmark's figures include each commit's flush."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K2_", "DJANGO_", "DATABASE_", "REDIS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "k2.devstack", "run", *flags, "--", sys.executable, "-c", _SHOW_DURABILITY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout.splitlines()
