"""HTTP client for the Dynatrace Metric Ingest API that retries what is transient and reports line errors.

Retried: 429, 5xx, timeouts and connection errors (exponential backoff with full jitter, `Retry-After`
honoured). Split: 413 halves the batch. Reported: 400 partial success names the invalid lines (the
valid ones were taken, so nothing is resent). Raised: 401/403/404 as `DynatraceError`, and
`DynatraceUnavailableError` once retries are exhausted. The token never appears in a repr, log or
exception message.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from monitoring_lib.errors import DynatraceError, DynatraceUnavailableError

log = logging.getLogger(__name__)

URL_ENV = "DYNATRACE_URL"
TOKEN_ENV = "DYNATRACE_API_TOKEN"
API_PATH = "/api/v2/metrics/ingest"
LOCAL_AGENT_PATH = "/metrics/ingest"
MAX_RETRY_AFTER_S = 300.0


class _Secret:
    """Holds the token so that printing the client or its attributes never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


@dataclass
class IngestResult:
    """Outcome of sending one list of lines; `invalid` maps 0-based positions in that list to reasons."""

    lines_ok: int = 0
    invalid: dict[int, str] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0


def ingest_endpoint(url: str) -> tuple[str, bool]:
    """The URL to POST to and whether it needs a token (the OneAgent local endpoint does not)."""
    base = url.strip().rstrip("/")
    scheme, sep, rest = base.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.split("/")[0]:
        raise DynatraceError(
            f"the Dynatrace URL {base!r} is not an http(s) URL: use https://<env-id>.live.dynatrace.com"
            " (or http://localhost:14499/metrics/ingest for a OneAgent)")
    if base.endswith(API_PATH):
        return base, True
    if base.endswith(LOCAL_AGENT_PATH):
        return base, False
    if base.endswith("/api/v2"):
        return base + LOCAL_AGENT_PATH, True
    return base + API_PATH, True


class IngestClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 10,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        max_backoff: float = 30,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.endpoint, self.needs_token = ingest_endpoint(url)
        if self.needs_token and not token:
            raise DynatraceError(
                f"no API token for {self.endpoint}: set {TOKEN_ENV} or the Connection password to a token "
                "with the 'metrics.ingest' scope"
            )
        self._token = _Secret(token) if (token and self.needs_token) else None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = requests.Session()

    def __repr__(self) -> str:
        token = "'***'" if self._token else "None"
        return f"IngestClient(endpoint={self.endpoint!r}, token={token})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, lines: Sequence[str]) -> IngestResult:
        """POST the lines (one request, split in halves on 413) and say which ones Dynatrace refused."""
        result = IngestResult()
        if not lines:
            return result
        response = self._post_with_retries("\n".join(lines).encode("utf-8"), result)
        status = response.status_code
        if status == 413:
            if len(lines) == 1:
                result.invalid[0] = "line is larger than the ingest payload limit (HTTP 413)"
                return result
            mid = len(lines) // 2
            log.info("Dynatrace answered 413 for %d lines; splitting into %d + %d", len(lines), mid,
                     len(lines) - mid)
            for offset, part in ((0, lines[:mid]), (mid, lines[mid:])):
                try:
                    sub = self.send(part)
                except DynatraceUnavailableError as exc:
                    if not offset + exc.settled:
                        raise
                    invalid = {**result.invalid, **{offset + i: r for i, r in exc.invalid.items()}}
                    raise DynatraceUnavailableError(str(exc), settled=offset + exc.settled, invalid=invalid) from exc
                result.lines_ok += sub.lines_ok
                result.requests += sub.requests
                result.retries += sub.retries
                result.invalid.update({offset + i: reason for i, reason in sub.invalid.items()})
            return result
        payload = _json(response)
        if status == 400:
            result.invalid = self._invalid_lines(payload, len(lines))
            result.lines_ok = len(lines) - len(result.invalid)
            log.warning("Dynatrace took %d lines and refused %d as invalid", result.lines_ok, len(result.invalid))
            return result
        if 200 <= status < 300:
            result.lines_ok = int(payload.get("linesOk", len(lines)) or 0)
            invalid_count = int(payload.get("linesInvalid") or 0)
            if invalid_count:
                result.invalid = self._invalid_lines(payload, len(lines))
            log.info("Dynatrace accepted %d lines (HTTP %d)", result.lines_ok, status)
            return result
        raise DynatraceError(self._fatal_message(response))

    def _post_with_retries(self, body: bytes, result: IngestResult) -> requests.Response:
        attempt = 0
        while True:
            result.requests += 1
            retry_after: float | None = None
            try:
                response = self._session.post(
                    self.endpoint, data=body, headers=self._headers(), timeout=self.timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                reason = f"{type(exc).__name__} talking to {self.endpoint}"
                if attempt >= self.max_retries:
                    raise DynatraceUnavailableError(self._exhausted(attempt, reason)) from exc
            except requests.RequestException as exc:  # a URL requests cannot use: no retry will fix it
                raise DynatraceError(f"cannot send to {self.endpoint}: {type(exc).__name__}") from exc
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
                if attempt >= self.max_retries:
                    raise DynatraceUnavailableError(self._exhausted(attempt, reason))
            delay = self._delay(attempt, retry_after)
            log.warning("Dynatrace ingest attempt %d failed (%s); retrying in %.2f s", attempt + 1, reason, delay)
            self._sleep(delay)
            attempt += 1
            result.retries += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        return self._rng.uniform(0, min(self.max_backoff, self.backoff_base * 2**attempt))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8", "Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Api-Token {self._token.reveal()}"
        return headers

    def _exhausted(self, attempt: int, reason: str) -> str:
        return f"Dynatrace did not accept metric lines at {self.endpoint} after {attempt + 1} attempts; last: {reason}"

    def _invalid_lines(self, payload: dict[str, Any], count: int) -> dict[int, str]:
        """Map Dynatrace's 1-based `invalidLines` to 0-based positions; without detail, all are invalid."""
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        entries = error.get("invalidLines") or payload.get("invalidLines")
        if not isinstance(entries, list):
            message = self._redact(str(error.get("message") or "request rejected without line details"))
            return dict.fromkeys(range(count), message)
        invalid: dict[int, str] = {}
        for entry in entries:
            try:
                index = int(entry["line"]) - 1
            except (KeyError, TypeError, ValueError):
                continue
            if 0 <= index < count:
                invalid[index] = self._redact(str(entry.get("error") or "invalid line"))[:1000]
        return invalid

    def _fatal_message(self, response: requests.Response) -> str:
        status = response.status_code
        if status == 401:
            return (f"Dynatrace rejected the API token for {self.endpoint} (HTTP 401): "
                    "check that the token exists, is enabled and has not expired")
        if status == 403:
            return (f"the API token is not allowed to ingest metrics at {self.endpoint} (HTTP 403): "
                    "it needs the 'metrics.ingest' scope")
        if status == 404:
            return (f"no metric ingest endpoint at {self.endpoint} (HTTP 404): check the environment URL, "
                    "and that metric ingestion is enabled (for OneAgent, the local ingest endpoint)")
        detail = self._redact(response.text[:300].replace("\n", " "))
        return f"Dynatrace answered HTTP {status} for {self.endpoint}: {detail}"

    def _redact(self, text: str) -> str:
        return text.replace(self._token.reveal(), "***") if self._token else text


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds is not None else None


def client_from_env(**kwargs: Any) -> IngestClient:
    """Build a client from DYNATRACE_URL and DYNATRACE_API_TOKEN (not needed for the OneAgent endpoint)."""
    url = os.environ.get(URL_ENV)
    if not url:
        raise DynatraceError(f"{URL_ENV} is not set: give the environment URL or the OneAgent ingest URL")
    return IngestClient(url, os.environ.get(TOKEN_ENV) or None, **kwargs)
