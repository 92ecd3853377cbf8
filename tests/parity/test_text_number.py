"""Text that reads as a number: the one SQL rule both the error flag and the quality checks use."""

from __future__ import annotations

import pandas as pd
from psycopg import sql

from monitoring_lib.sql_common import stripped, text_number

TEXTS = ["0", "-0", " 12 ", "\t3.5\n", "+.5e3", "5.", "1E5", "abc", "", "inf", "nan", "0x10", "1e", ".",
         "1e308", "1.7976931348623158e308", "1.8e308", "-2e308", "1e999", "1e5000", "-1e5000", "1e-400",
         "1e-5000", "1e-99999", "0e99999", "-1e-10000", "4e-320", "2.4703282292062328e-324",
         "1." + "0" * 20000, "0." + "0" * 17000 + "1", "-2." + "5" * 20000 + "e-3"]


def test_number_text_reads_as_pandas_reads_it_and_no_text_fails_the_query(conn):
    conn.execute("CREATE TABLE texts (i int, x text)")
    with conn.cursor().copy("COPY texts FROM STDIN") as copy:
        for i, text in enumerate(TEXTS):
            copy.write_row((i, text))
    query = sql.SQL("SELECT {} FROM texts ORDER BY i").format(text_number(stripped(sql.Identifier("x"))))
    got = [r[0] for r in conn.execute(query).fetchall()]
    parsed = pd.to_numeric(pd.Series(TEXTS, dtype=object), errors="coerce").tolist()
    # the words 'inf' and 'nan' are not decimal numbers here (the error flag reads the infinity words itself);
    # values compare as floats, so -0.0 equals 0.0 (no reader of this rule tells them apart)
    expected = [None if t.strip().lower() in ("inf", "nan") or pd.isna(v) else v
                for t, v in zip(TEXTS, parsed, strict=True)]
    assert [(t[:20], g, e) for t, g, e in zip(TEXTS, got, expected, strict=True) if g != e] == []
    assert sum(v is None for v in got) == 7  # both readings are exercised
