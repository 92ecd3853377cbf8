"""The tables of schema `monitoring`, written and read back.

- `tables`: idempotent writes (a window's rows replaced in one transaction, upserts);
- `window`: one window's results into every summary table, and the history anomalies are judged on;
- `report`: the `IntervalReport` callers get, and a stored window's report while it is still current;
- `quality`: data-quality result rows; `profiles`: reference profiles; `endpoints`: the endpoint registry
  and the promotion history.
"""
