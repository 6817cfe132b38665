"""Shared fixtures: an isolated environment for every test and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DATABASE_URL",
    "QDRANT_URL",
    "QDRANT_API_KEY",
)
# Port 9 is "discard": nothing listens there, so an accidental real provider call fails at once.
_DEAD_BASE_URL = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own SUPPORTGRAPH_HOME and no credentials or service URLs."""
    for name in list(os.environ):
        if name.startswith("SUPPORTGRAPH_"):
            monkeypatch.delenv(name, raising=False)
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "sg_home"
    home.mkdir()
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(home))
    monkeypatch.setenv("OPENAI_BASE_URL", _DEAD_BASE_URL)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", _DEAD_BASE_URL)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    return home


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        version = bindir.parent.name
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            key = tuple(int(p) for p in version.split(".") if p.isdigit())
            candidates.append((key, bindir))
    if not candidates:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "install them (e.g. `apt-get install postgresql`) to run the integration tests",
            pytrace=False,
        )
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """A PostgreSQL cluster in a temp dir, owned by the test session."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "server.log"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and proc.returncode != 0:
            log = ""
            if self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )
        return proc

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            # fsync=off only matters if the machine crashes; commits still survive a killed
            # server process, which is what the chaos tests exercise.
            "-c fsync=off -c max_connections=200"
        )

    def init(self) -> None:
        """Create the cluster (trust auth, superuser ``postgres``)."""
        self.socket_dir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        """Start the server, retrying on a new port if the chosen one was taken meanwhile."""
        for _attempt in range(3):
            proc = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                             "-o", self._options(), "-w", "-t", "60", "start", check=False)
            if proc.returncode == 0:
                self.wait_ready()
                return
            self.port = _free_port()
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-o", self._options(), "-w", "-t", "60", "start")
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until ``pg_isready`` says the server accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres", "-d", "postgres", "-t", "2"],
                capture_output=True, text=True, timeout=30,
            )
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready on port {self.port}: {proc.stdout}")
            time.sleep(0.1)

    def dsn(self, dbname: str = "postgres") -> str:
        """Connection URL for ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the whole session, removed afterwards."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="sg-pg-"))
    server = PgServer(bindir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped after the test."""
    import psycopg

    dbname = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    yield pg_server.dsn(dbname)
    if pg_server.is_running():
        with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --------------------------------------------------------------------------- workflow homes


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the demo intent model trained and the demo KB ingested, built once.

    Built by `supportgraph init` in a subprocess, so this process never holds the local Qdrant
    lock on it; tests copy it (Qdrant local mode allows one process per folder).
    """
    import sys

    home = tmp_path_factory.mktemp("template_home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPPORTGRAPH_") and k not in _PROVIDER_ENV}
    env.update(SUPPORTGRAPH_HOME=str(home), LANGSMITH_TRACING="false")
    result = subprocess.run([sys.executable, "-m", "app.cli", "init"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture
def demo_home(
    template_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private copy of the template home, set as SUPPORTGRAPH_HOME; handles closed after."""
    from graph.persistence import close_all
    from graph.resources import reset_resources
    from retrieval.store import close_stores

    home = tmp_path / "demo_home"
    shutil.copytree(template_home, home)
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(home))
    yield home
    reset_resources()
    close_all()
    close_stores()
