"""How one window's numbers are computed: three modes, each returning one `WindowResults`.

- `memory`: the window read into a DataFrame (`compute: memory`);
- `database`: the same numbers as aggregate queries, no row leaving PostgreSQL (`compute: database`);
  `database/X.py` is the SQL form of `memory/X.py` where both exist (bad rows, KPIs, operational
  buckets, quality), so each number has one place to compare with its twin;
- `groups`: one wide model spread over mapped tasks, their mergeable partials combined exactly.

`window_results` holds the value every mode returns; `anomalies` judges it against stored history.
"""
