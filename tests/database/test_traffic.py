from datetime import datetime, timedelta, timezone

from monitoring_lib.demo.claims_model import CATEGORICAL_FEATURES, LABEL_COLUMN, NUMERIC_FEATURES, make_training_data
from monitoring_lib.demo.claims_model import train as train_model
from monitoring_lib.demo.seed import create_source_tables
from monitoring_lib.demo.traffic import traffic_tick


def test_live_traffic_appends_fresh_rows_and_labels_only_after_their_delay(conn):
    create_source_tables(conn)
    model = train_model(make_training_data(2000, seed=1), numeric_features=list(NUMERIC_FEATURES),
                        categorical_features=list(CATEGORICAL_FEATURES), label_column=LABEL_COLUMN)
    t0 = datetime(2026, 11, 23, 10, 30, tzinfo=timezone.utc)
    rows = traffic_tick(conn, model, now=t0, rows_per_hour=1200, seed=1)
    assert rows == 20
    stamps = conn.execute("SELECT min(ts), max(ts), count(DISTINCT request_id) FROM public.claims_inference").fetchone()
    assert t0 - timedelta(seconds=60) <= stamps[0] and stamps[1] <= t0 and stamps[2] == 20
    assert conn.execute("SELECT count(*) FROM public.claims_labels").fetchone()[0] == 0
    traffic_tick(conn, model, now=t0 + timedelta(hours=7), rows_per_hour=1200, seed=2)
    labelled = conn.execute("SELECT count(*), max(labelled_at) FROM public.claims_labels").fetchone()
    assert labelled[0] > 0 and labelled[1] <= t0 + timedelta(hours=7)
