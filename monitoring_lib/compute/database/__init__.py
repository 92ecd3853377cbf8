"""Interval numbers computed inside PostgreSQL: no row of the window reaches Python.

- `sql`: the toolbox every SQL builder shares (quoting, the window predicate, casts that read values
  as the memory mode does, query error mapping);
- `aggregates`: `AggregatePlan`, the plain aggregates several modules share one scan for;
- `scan`: `summaries_in_database`, which plans the window's few scans and assembles their results;
- `histograms`, `moments`, `quantiles`, `operational`: the query of each scan and how its rows decode;
- `bad_rows`, `kpis`: bad-row accounting and business KPIs as aggregates of a shared plan;
- `quality`: the quality suite's row checks as aggregates, table checks as queries;
- `snapshot`: the window's one READ ONLY snapshot, and a twin session on it;
- `window`: the mode itself, which runs the above in one snapshot.
"""
