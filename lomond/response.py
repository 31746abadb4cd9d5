"""The server's HTTP response to the upgrade request."""

from __future__ import annotations


class Response:
    """An HTTP response head, parsed from its raw bytes.

    Args:
        header_data: The status line and header lines, up to and optionally including
            the blank line that ends them.

    Attributes:
        raw: The bytes the response was parsed from.
        http_ver: The HTTP version, e.g. ``"HTTP/1.1"``.
        status_code: The status code, or ``None`` when it is not a number.
        status: The reason phrase, e.g. ``"Switching Protocols"``.
        headers: Lower-cased header names mapped to their values; repeated headers are
            joined with ``","`` as RFC 9110 §5.3 allows.
    """

    def __init__(self, header_data: bytes | bytearray) -> None:
        self.raw = bytes(header_data)
        lines = self.raw.decode("latin-1").split("\r\n")
        status_line = lines[0].split(None, 2)
        status_line += [""] * (3 - len(status_line))
        self.http_ver: str = status_line[0]
        try:
            self.status_code: int | None = int(status_line[1])
        except ValueError:
            self.status_code = None
        self.status: str = status_line[2]
        self.headers: dict[str, str] = {}
        last_name: str | None = None
        for line in lines[1:]:
            if not line:
                continue
            if line[0] in " \t" and last_name is not None:
                # Obsolete line folding (RFC 9110 §5.5): continue the previous value.
                self.headers[last_name] += " " + line.strip()
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name in self.headers:
                self.headers[name] += ", " + value
            else:
                self.headers[name] = value
            last_name = name

    def __repr__(self) -> str:
        return f"<response {self.http_ver} {self.status_code} {self.status}>"

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of header ``name`` (any case), or ``default``."""
        if not isinstance(name, str):
            raise TypeError("header name must be a str")
        return self.headers.get(name.lower(), default)

    def get_list(self, name: str) -> list[str]:
        """Return the comma-separated values of header ``name`` as a list (``[]`` if absent)."""
        value = self.get(name)
        if not value:
            return []
        return [part.strip() for part in value.split(",") if part.strip()]
