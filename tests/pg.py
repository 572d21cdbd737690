"""A throwaway PostgreSQL server for tests: initdb + pg_ctl into a temp dir on a free loopback port.

Use the `pg_url` fixture (a fresh, empty database per test) or `pg_server()` (the one server of this
test process). When RATCHET_TEST_POSTGRES_URL is set (e.g. a server that CI started), databases are
created on that server instead. Tests skip with a clear reason when no server can be had: no
PostgreSQL binaries, no psycopg, or a server that does not start.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` account (Debian's package creates it) or, failing that, to `nobody`.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

ENV_URL = "RATCHET_TEST_POSTGRES_URL"
SUPERUSER = "ratchet"


def find_pg_bin() -> Path | None:
    """The directory holding initdb/pg_ctl: $RATCHET_PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates = [os.environ.get("RATCHET_PG_BIN", "")]

    def version(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates += [str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)]
    on_path = shutil.which("initdb")
    candidates += [str(Path(on_path).parent)] if on_path else []
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: ourselves unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists to own the cluster")


class PgServer:
    """One PostgreSQL cluster in a temp dir; `stop()` removes it."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.account = _server_account()
        self.dir = Path(tempfile.mkdtemp(prefix="ratchet-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.running = False

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kw = {}
        if self.account is not None:
            kw = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=self.dir,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}, **kw)

    def start(self) -> None:
        if self.account is not None:
            os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)
        init = self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-800:]}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        ctl = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                        "-o", opts, "-w", "-t", "60", "start")
        if ctl.returncode != 0:
            log = (self.dir / "log").read_text()[-800:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {ctl.stderr.strip()[-400:]} {log}")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"


def _with_database(url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def create_database(admin_url: str, prefix: str = "t") -> str:
    """A new empty database on the server behind `admin_url`; returns its SQLAlchemy URL."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return _with_database(admin_url, name)


_server: PgServer | None = None
_failure: str | None = None


def pg_admin_url() -> str:
    """The admin URL of a usable server (started once per test process), or pytest.skip with the reason."""
    global _server, _failure
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    if _failure:
        pytest.skip(_failure)
    if _server is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _failure = "psycopg is not installed (pip install 'psycopg[binary]'); PostgreSQL tests skipped"
            pytest.skip(_failure)
        bin_dir = find_pg_bin()
        if bin_dir is None:
            _failure = ("no PostgreSQL server binaries (initdb, pg_ctl) found in $RATCHET_PG_BIN, "
                        "/usr/lib/postgresql/*/bin or PATH; install postgresql to run these tests")
            pytest.skip(_failure)
        server = PgServer(bin_dir)
        try:
            server.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            server.stop()
            _failure = f"could not start a throwaway PostgreSQL server: {e}"
            pytest.skip(_failure)
        atexit.register(server.stop)
        _server = server
    return _server.admin_url


@pytest.fixture
def pg_url() -> str:
    """A fresh empty database on the test PostgreSQL server (skips when there is none)."""
    return create_database(pg_admin_url())
