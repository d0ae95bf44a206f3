"""Where the live server listens: ``[HOST:]PORT`` parsing, loopback checks and bind errors in words."""

import errno
import ipaddress

from ..errors import RuntimeUserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "port already in use (another server, or an earlier run still holding it)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    return f"cannot listen there ({exc.strerror or exc})"


def parse_address(spec: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:8080`` for IPv6) → (host, port); loopback when no host is given."""
    text = str(spec).strip()
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (":" in host and not text.startswith("[")):
        raise RuntimeUserError(f"--serve {spec!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080 or [::1]:8080")
    return host or "127.0.0.1", int(port)
