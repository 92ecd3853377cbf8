"""How an interval's numbers are computed when the rows stay in PostgreSQL (`compute: database`).

The pandas form of the same numbers lives beside the code that reads the window into memory
(`frames`, `operational`, `applications`, `drift.summaries`, `quality.native`); `database` holds the
SQL form, module for module, so each in-database number has one place to compare with its twin.
"""
