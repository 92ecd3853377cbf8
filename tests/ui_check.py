"""`make ui-check`: the Model Monitoring view in a real browser, on real tables, behind Airflow's login.

Starts an embedded PostgreSQL, seeds the demo's simulated traffic and monitors its hourly windows with the
library (the incident hour fails its critical checks, the drift phase drifts), starts a real
`airflow api-server` with SimpleAuthManager, logs in through `POST /auth/token`, and renders `/mlmon/` and
an endpoint page in headless Chromium. The browser goes through a loopback relay that adds the UI's
`_token` cookie, as a logged-in browser sends it. Asserts what an operator must see and saves screenshots;
exits non-zero when an assertion fails. Not collected by pytest (not named test_*).

Usage: python tests/ui_check.py [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_server import api_server, free_port, token  # noqa: E402

from monitoring_lib import migrations  # noqa: E402
from monitoring_lib.config import get_endpoint  # noqa: E402
from monitoring_lib.db import EmbeddedPostgres, connect  # noqa: E402
from monitoring_lib.demo.orchestrate import ENDPOINT_ID  # noqa: E402
from monitoring_lib.demo.scenario import current_hour  # noqa: E402
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo  # noqa: E402
from monitoring_lib.reference import fit_and_store, read_training_data  # noqa: E402
from monitoring_lib.runner import run_interval  # noqa: E402
from monitoring_lib.schedule import windows  # noqa: E402

HOURS = 30
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def seed(url: str) -> None:
    """The demo's traffic over HOURS hours, every window monitored, ending at the current hour."""
    cfg = get_endpoint(ENDPOINT_ID)
    end = current_hour()
    with connect(url) as conn:
        migrations.upgrade(conn)
        seeded = seed_demo(conn, end=end, hours=HOURS, rows_per_hour=400, seed=42)
        conn.commit()
    training, _ = read_training_data(url, table=f"public.{TRAINING_TABLE}")
    training[cfg.source.prediction_column] = seeded.model.predict(training)
    fit_and_store(url, cfg, frame=training)
    for start, stop in windows(end - timedelta(hours=HOURS), end, cfg.schedule.interval):
        run_interval(url, cfg, start, stop)


def relay(upstream: str, cookie: str) -> tuple[ThreadingHTTPServer, str]:
    """A loopback HTTP relay to the api-server that adds the `_token` cookie (GET only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            resp = httpx.get(upstream + self.path, cookies={"_token": cookie}, timeout=60, follow_redirects=False)
            self.send_response(resp.status_code)
            for key in ("content-type", "location"):
                if key in resp.headers:
                    self.send_header(key, resp.headers[key])
            self.send_header("content-length", str(len(resp.content)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the browser may hang up early
                self.wfile.write(resp.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def chromium(url: str, screenshot: Path | None = None) -> str:
    """The page's DOM after rendering (or a screenshot) from headless Chromium with a fresh profile."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium (make ui-check does it)")
    with tempfile.TemporaryDirectory(prefix="mlmon-chromium-") as profile:
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        if screenshot is not None:
            args += [f"--screenshot={screenshot}", "--window-size=1400,1000", "--hide-scrollbars"]
        else:
            args += ["--dump-dom"]
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


CHECKED: list[str] = []


def check(failures: list[str], condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    CHECKED.append(what)
    if not condition:
        failures.append(what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".mlmon/ui-check"), help="where screenshots go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlmon-ui-") as tmp, EmbeddedPostgres() as url:
        print("seeding the demo traffic and monitoring its windows ...", flush=True)
        seed(url)
        print("starting airflow api-server ...", flush=True)
        with api_server(Path(tmp) / "airflow", url) as base:
            anonymous = httpx.get(f"{base}/mlmon/api/endpoints", timeout=30)
            check(failures, anonymous.status_code == 401, "anonymous /mlmon/api/endpoints is refused (401)")
            server, front = relay(base, token(base, "viewer"))
            try:
                listing = chromium(f"{front}/mlmon/")
                detail = chromium(f"{front}/mlmon/endpoints/{ENDPOINT_ID}")
                chromium(f"{front}/mlmon/", args.out / "list.png")
                chromium(f"{front}/mlmon/endpoints/{ENDPOINT_ID}", args.out / "endpoint.png")
                filtered = chromium(f"{front}/mlmon/?state=quality_failed")
            finally:
                server.shutdown()
    check(failures, f'data-endpoint="{ENDPOINT_ID}"' in listing, f"the list shows endpoint {ENDPOINT_ID}")
    check(failures, 'data-dq="failed"' in listing, "the strip shows a window that failed data quality")
    check(failures, 'data-drift="drift_detected"' in listing or 'data-drift="possible_drift"' in listing,
          "the strip shows drift")
    check(failures, "last window ended" in listing and ("fresh" in listing or "late" in listing),
          "staleness is shown")
    check(failures, "model_retraining" in listing and ">paused<" in listing, "the paused retraining DAG is shown")
    check(failures, f'href="/dags/monitor__{ENDPOINT_ID}"' in listing, "the list links the monitoring DAG")
    check(failures, "Drifted features in the last window" in detail, "the endpoint page has the drift section")
    check(failures, "Windows (30, newest first)" in detail, "the endpoint page lists every window")
    check(failures, '<span class="badge bad">failed</span>' in detail, "a failed-quality badge on the endpoint page")
    check(failures, "<td><strong>" in detail.split("Drifted features in the last window")[1].split("<h2>")[0],
          "a drifted feature with its metrics on the endpoint page")
    check(failures, "critical" in detail, "failed critical checks are listed")
    check(failures, "multivariate reconstruction error" in detail and "outside the reference band" in detail,
          "the multivariate drift reason is on the endpoint page")
    check(failures, "Segments in the last window" in detail and "region=north" in detail,
          "the endpoint page lists the last window's segments")
    check(failures, "Estimated performance in the last window" in detail and "estimated mae" in detail,
          "the endpoint page shows the estimated MAE and its band")
    check(failures, "No endpoint is in this state" in filtered, "the last window is clean, so quality_failed is empty")
    for name in ("list.png", "endpoint.png"):
        path = args.out / name
        check(failures, path.exists() and path.stat().st_size > 10_000, f"screenshot {path}")
    print(f"ui-check: {len(CHECKED) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
