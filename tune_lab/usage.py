"""Bad input, and the checks of it that several commands share: a `UsageError` is one line, exit 2."""
from __future__ import annotations

from labspec.errors import TuneLabError


class UsageError(TuneLabError):
    """Bad input: printed as one line, exit code 2, nothing written."""


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another server holds before printing a URL that would lead to it.

    MLflow's server only says "Address already in use" after our URL line, and exits 0.
    SO_REUSEADDR, as the server sets it: a port left in TIME_WAIT is free, one with a listener is not.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            problem = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
            raise UsageError(f"--port {port}: {host}:{port} {problem}; choose another port, e.g. --port {port + 1}") from None
