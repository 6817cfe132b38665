"""A throwaway PostgreSQL server for benchmarks, started the way the test suite starts its own.

`initdb` refuses to run as root, so as root the server binaries run as the `postgres` user
(`runuser -u postgres -- ...`), in a temp dir, on a free port. `fsync=off` matches the suite:
commits still survive a killed server process; only a machine crash could lose them.

    with throwaway_postgres() as server:
        url = server.dsn()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start."""


def pg_bindir() -> Path:
    """The newest `/usr/lib/postgresql/*/bin` that has `initdb` and `pg_ctl`."""
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        version = bindir.parent.name
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            key = tuple(int(p) for p in version.split(".") if p.isdigit())
            candidates.append((key, bindir))
    if not candidates:
        raise PgUnavailable("PostgreSQL server binaries not found under "
                            "/usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return max(candidates)[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """A PostgreSQL cluster in `root`, started with `start()` and removed by its owner."""

    def __init__(self, bindir: Path, root: Path, *, max_connections: int = 300) -> None:
        self.bindir = bindir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "server.log"
        self.port = free_port()
        self.max_connections = max_connections
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and proc.returncode != 0:
            log = (self.log_file.read_text(errors="replace")[-2000:]
                   if self.log_file.exists() else "")
            raise PgUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): "
                                f"{proc.stderr.strip()} {log}")
        return proc

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                f"-c fsync=off -c max_connections={self.max_connections}")

    def init(self) -> None:
        """Create the cluster (trust auth, superuser `postgres`)."""
        self.socket_dir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        """Start the server, on a new port if the chosen one was taken meanwhile."""
        for _attempt in range(3):
            proc = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                             "-o", self._options(), "-w", "-t", "60", "start", check=False)
            if proc.returncode == 0:
                self.wait_ready()
                return
            self.port = free_port()
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-o", self._options(), "-w", "-t", "60", "start")
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until `pg_isready` says the server accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres", "-d", "postgres", "-t", "2"],
                capture_output=True, text=True, timeout=30)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PgUnavailable(f"PostgreSQL not ready on port {self.port}")
            time.sleep(0.1)

    def dsn(self, dbname: str = "postgres") -> str:
        """Connection URL for `dbname` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return self.dsn(dbname)

    def is_running(self) -> bool:
        """Whether the postmaster of this cluster is up."""
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def restart(self) -> None:
        """Fast restart (drops all connections), then wait until it accepts connections again."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-o", self._options(), "-m", "fast", "-w", "-t", "60", "restart")
        self.wait_ready()

    def stop(self) -> None:
        """Stop the server if it runs (fast mode); safe to call twice."""
        if self.data_dir.exists() and self.is_running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")


@contextmanager
def running_server(prefix: str, *, bindir: Path | None = None,
                   max_connections: int = 300) -> Iterator[PgServer]:
    """A new cluster in a temp dir, started; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = PgServer(bindir or pg_bindir(), root, max_connections=max_connections)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def throwaway_postgres(url: str | None = None) -> Iterator[str]:
    """Yield a URL of an empty database: on `url`'s server if given, else on a new server."""
    if url:
        yield url
        return
    with running_server("sg-bench-pg-") as server:
        yield server.create_database("bench")
