"""Interval numbers computed on a DataFrame of the window (`compute: memory`).

- `window`: the mode itself: read, normalise, then every check and summary (`frame_results`);
- `bad_rows`: normalising the frame and counting its defects (`BadRowReport`);
- `operational`, `kpis`: 5-minute operational buckets and business KPIs;
- `summaries`: per-column drift summaries (histograms, quantiles, moments in one sort);
- `quality`, `quality_native`: the quality suite on a frame, vectorised where GX's results can be matched.
"""
