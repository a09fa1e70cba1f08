"""Local ports for the embedded servers (and the tests and benchmarks that start their own)."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS considers free right now. Another process may still take it before the caller
    binds it, so callers that can should retry on "address in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class BindProblem:
    """Why a server cannot listen on an address. ``on_port``: the port is the trouble (taken, privileged,
    out of range), so another port helps; otherwise the address is (not this machine's, unknown name)."""

    reason: str
    on_port: bool
    in_use: bool = False


def bind_problem(host: str, port: int) -> BindProblem | None:
    """What stops a server listening on ``host:port`` now, in words for its operator; ``None`` if nothing
    does. Each cause has its own answer: an address the machine lacks is not a taken port."""
    if not 0 < port < 65536:
        return BindProblem(f"port {port} is not a TCP port (1 to 65535)", on_port=True)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return BindProblem(f"{host!r} is not an address or a known host name ({exc.strerror})", on_port=False)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT counts as free
        try:
            sock.bind(address)
        except OSError as exc:
            return _explain(exc, host, port)
    return None


def _explain(exc: OSError, host: str, port: int) -> BindProblem:
    if exc.errno == errno.EADDRINUSE:
        return BindProblem(f"port {port} is taken (another program listens on it)", on_port=True, in_use=True)
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindProblem(
            f"address {host} is not available on this machine (none of its network interfaces has it); "
            "use one of its own addresses, 127.0.0.1 for this machine only or 0.0.0.0 for every interface",
            on_port=False,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        if port < 1024:
            return BindProblem(
                f"permission denied: port {port} is below 1024, which only root (or a program with "
                "CAP_NET_BIND_SERVICE) may use; choose a port from 1024 up",
                on_port=True,
            )
        return BindProblem(f"permission denied on {host}:{port} ({exc.strerror})", on_port=True)
    if exc.errno == errno.EAFNOSUPPORT:
        return BindProblem(f"this machine does not support the address family of {host}", on_port=False)
    return BindProblem(f"cannot listen on {host}:{port}: {exc.strerror or exc}", on_port=False)


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (SO_REUSEADDR, so a port in TIME_WAIT counts as free)."""
    return bind_problem(host, port) is None
