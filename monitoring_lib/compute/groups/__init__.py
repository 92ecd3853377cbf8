"""Feature groups (`scale_out.feature_group_size`): `partials` summarises one group and serialises it,
`window` merges the partials with the core columns into the window's results."""
