"""A local HTTP server that speaks the Dynatrace Metric Ingest protocol, for push tests.

It checks the token header, parses every line with its own grammar (independent of the library's
formatter), answers 202 / 400 partial / 413 like Dynatrace, can be scripted to answer 429 or 503
for the next N requests, and records every line it accepted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_PATH = "/api/v2/metrics/ingest"

_NUM = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*$")
_DIM = re.compile(r',([a-z_][a-z0-9._:-]*)=("(?:[^"\\]|\\.)*"|[^",= ]+)')
_PAYLOAD = re.compile(
    rf"^(?:gauge,(?P<g>{_NUM})"
    rf"|gauge,min=(?P<min>{_NUM}),max=(?P<max>{_NUM}),sum=(?P<sum>{_NUM}),count=(?P<count>\d+)"
    rf"|count,delta=(?P<delta>{_NUM}))$"
)


@dataclass(frozen=True)
class ParsedLine:
    key: str
    dimensions: dict[str, str]
    payload: str
    value: float
    timestamp_ms: int | None


def parse_line(line: str) -> ParsedLine:
    """Parse one protocol line; raise ValueError with Dynatrace-like reasons."""
    if "\n" in line or "\r" in line:
        raise ValueError("line contains a line break")
    head_end = _head_end(line)
    head, rest = line[:head_end], line[head_end + 1 :]
    key, _, dim_text = head.partition(",")
    if not 3 <= len(key) <= 255 or not _KEY.match(key) or key.lower().startswith("dt."):
        raise ValueError(f"invalid metric key '{key}'")
    dims: dict[str, str] = {}
    dim_text = "," + dim_text if dim_text else ""
    pos = 0
    while pos < len(dim_text):
        match = _DIM.match(dim_text, pos)
        if not match:
            raise ValueError(f"invalid dimension at '{dim_text[pos:pos + 30]}'")
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        dims[match.group(1)] = raw
        pos = match.end()
    if len(dims) > 50:
        raise ValueError("more than 50 dimensions")
    parts = rest.split(" ")
    if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("invalid payload or timestamp")
    match = _PAYLOAD.match(parts[0])
    if not match:
        raise ValueError(f"invalid payload '{parts[0]}'")
    value = match.group("g") or match.group("delta") or match.group("sum")
    return ParsedLine(key, dims, parts[0], float(value), int(parts[1]) if len(parts) == 2 else None)


def _head_end(line: str) -> int:
    """Index of the first space outside a quoted dimension value."""
    quoted = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            return i
    raise ValueError("no payload after the metric key")


@dataclass
class Scripted:
    status: int
    retry_after: int | None = None


@dataclass
class IngestServer:
    """Start with `with IngestServer(token=...) as server:`; `server.url` is the environment URL."""

    token: str | None = "dt0c01.TEST.local-ingest-token"
    max_bytes: int = 1_000_000
    path: str = API_PATH
    accepted: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    _script: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> IngestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, headers = server._answer(self.path, self.headers.get("Authorization"),
                                                          self.headers.get("Content-Type", ""), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, count: int, status: int, retry_after: int | None = None, *, after: int = 0) -> None:
        """Answer the next `count` requests with `status` (429 or 5xx), before looking at them; with `after`,
        only once that many more requests were answered as usual (an outage in the middle of a push)."""
        with self._lock:
            self._script.extend([None] * after)
            self._script.extend(Scripted(status, retry_after) for _ in range(count))

    def statuses(self) -> list[int]:
        with self._lock:
            return [r["status"] for r in self.requests]

    def _answer(self, path: str, auth: str | None, content_type: str, body: bytes) -> tuple[int, dict, dict]:
        with self._lock:
            status, payload, headers = self._decide(path, auth, content_type, body)
            self.requests.append({"status": status, "bytes": len(body), "lines": body.count(b"\n") + 1})
            return status, payload, headers

    def _decide(self, path: str, auth: str | None, content_type: str, body: bytes) -> tuple[int, dict, dict]:
        if path != self.path:
            return 404, _error(404, "Not found"), {}
        if self.token is not None and auth != f"Api-Token {self.token}":
            return 401, _error(401, "Missing authorization parameter." if auth is None else "Token is invalid"), {}
        scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            headers = {"Retry-After": str(scripted.retry_after)} if scripted.retry_after is not None else {}
            return scripted.status, _error(scripted.status, "scripted failure"), headers
        if not content_type.startswith("text/plain"):
            return 415, _error(415, "Unsupported media type"), {}
        if len(body) > self.max_bytes:
            return 413, _error(413, "Payload too large"), {}
        lines = [line for line in body.decode("utf-8").split("\n") if line.strip()]
        invalid = []
        for number, line in enumerate(lines, start=1):
            try:
                parse_line(line)
            except ValueError as exc:
                invalid.append({"line": number, "error": str(exc)})
            else:
                self.accepted.append(line)
        ok = len(lines) - len(invalid)
        if invalid:
            error = {"code": 400, "message": f"{len(invalid)} invalid lines", "invalidLines": invalid}
            return 400, {"linesOk": ok, "linesInvalid": len(invalid), "error": error}, {}
        return 202, {"linesOk": ok, "linesInvalid": 0, "error": None, "warnings": None}, {}


def _error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
