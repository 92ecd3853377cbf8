from datetime import datetime, timedelta, timezone

import pytest

from monitoring_lib.config import RetrainingConfig, format_duration, parse_duration
from monitoring_lib.retraining.policy import WindowOutcome, decide
from monitoring_lib.schedule import resolve_window

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
H = timedelta(hours=1)


def w(i: int, status: str | None = "drift_detected", dq: str | None = "passed", feats=("x",)) -> WindowOutcome:
    return WindowOutcome(T0 + i * H, T0 + (i + 1) * H, status, dq, tuple(feats))


POLICY = RetrainingConfig()


def test_two_of_the_last_three_detected_triggers_with_reasons_and_features():
    d = decide(w(2), [w(0, "no_drift"), w(1, feats=("a", "b"))], [], POLICY)
    assert d.trigger and d.drifted_features == ["a", "b", "x"]
    assert "drift detected in 2 of the last 3 window(s)" in d.reasons[0]
    assert d.evidence["detected"] == 2 and len(d.evidence["considered"]) == 3


def test_one_detection_is_not_enough_and_old_windows_fall_out_of_the_lookback():
    assert not decide(w(2), [w(0, "no_drift"), w(1, "possible_drift")], [], POLICY).trigger
    d = decide(w(5), [w(0), w(1), w(3, "no_drift"), w(4, "no_drift")], [], POLICY)
    assert not d.trigger and "1 of the last 3" in d.reasons[0]


def test_failed_quality_never_triggers_nor_counts_as_evidence():
    d = decide(w(2, dq="failed"), [w(0), w(1)], [], POLICY)
    assert not d.trigger and "failed quality" in d.reasons[0]
    d = decide(w(2), [w(0, "no_drift"), w(1, dq="failed")], [], POLICY)
    assert not d.trigger


def test_cooldown_and_daily_cap():
    assert not decide(w(5), [w(3), w(4)], [T0 + 2 * H], POLICY).trigger
    assert decide(w(5), [w(3), w(4)], [T0 + 2 * H], POLICY).reasons == [
        f"cooldown: retraining was triggered for the window ending {(T0 + 2 * H).isoformat()}, less than the"
        " cooldown of 1 day before or after this one"]
    d = decide(w(5), [w(3), w(4)], [T0 + 5 * H], RetrainingConfig(cooldown="90m"))
    assert "less than the cooldown of 1 hour 30 minutes" in d.reasons[0]
    short = RetrainingConfig(cooldown="1h", daily_cap=1)
    d = decide(w(5), [w(3), w(4)], [T0 + 2 * H], short)
    assert not d.trigger and "daily cap of 1" in d.reasons[0]
    two_a_day = RetrainingConfig(cooldown="1h", daily_cap=2)
    assert decide(w(5), [w(3), w(4)], [T0 + 2 * H], two_a_day).trigger
    assert decide(w(30), [w(28), w(29)], [T0 + 2 * H], POLICY).trigger  # a day later


def test_cooldown_and_daily_cap_hold_when_windows_are_decided_newest_first():
    """A backfill run newest first decides the later window before the earlier one."""
    d = decide(w(5), [w(3), w(4)], [T0 + 9 * H], POLICY)  # window 8 (ending 9h) already triggered
    assert not d.trigger and "cooldown" in d.reasons[0] and (T0 + 9 * H).isoformat() in d.reasons[0]
    assert decide(w(5), [w(3), w(4)], [T0 + 31 * H], POLICY).trigger  # a day and more apart
    two = RetrainingConfig(cooldown="1h", daily_cap=2)
    # triggers at 3h and 20h: 6h's window would be the third inside [3h, 27h)
    d = decide(w(5), [w(3), w(4)], [T0 + 3 * H, T0 + 20 * H], two)
    assert not d.trigger and "daily cap of 2" in d.reasons[0]
    # at 3h and 28h: no 24 hours hold more than two with 6h's
    assert decide(w(5), [w(3), w(4)], [T0 + 3 * H, T0 + 28 * H], two).trigger


def test_disabled_policy_records_why():
    d = decide(w(2), [w(0), w(1)], [], RetrainingConfig(enabled=False))
    assert not d.trigger and d.reasons == ["retraining is disabled for this endpoint"]


def test_zero_width_airflow_intervals_become_the_last_whole_interval():
    start, end = resolve_window(T0 + 90 * timedelta(minutes=1), T0 + 90 * timedelta(minutes=1), H, T0)
    assert (start, end) == (T0, T0 + H)
    assert resolve_window(T0, T0 + H, H, T0) == (T0, T0 + H)
    assert resolve_window(None, None, H, T0, "2026-11-20T05:00:00Z", "2026-11-20T06:00:00Z") == (T0 + 5 * H, T0 + 6 * H)


def test_airflow_intervals_as_pendulum_datetimes_and_off_the_grid():
    """Airflow passes pendulum datetimes (their arithmetic after astimezone used to turn naive and fail the
    sensor's comparison); a manual run's interval ends at the trigger moment and a daily schedule without
    catchup is aligned to the epoch: both are replaced by the last whole interval of the start_date grid."""
    import pendulum

    from monitoring_lib.schedule import grace_passed

    p0 = pendulum.instance(T0).in_timezone("Europe/Paris")
    start, end = resolve_window(p0, p0 + H, H, T0)
    assert (start, end) == (T0, T0 + H) and type(start) is datetime and type(end) is datetime
    assert grace_passed(pendulum.instance(T0 + H), timedelta(minutes=5), now=pendulum.instance(T0 + 2 * H))
    assert not grace_passed(end, timedelta(minutes=5), now=pendulum.instance(T0 + H))
    trigger = T0 + 9 * H + timedelta(minutes=17, seconds=42)
    assert resolve_window(trigger - H, trigger, H, T0) == (T0 + 8 * H, T0 + 9 * H)
    day, anchor = timedelta(days=1), T0 + 6 * H
    assert resolve_window(T0 + day, T0 + 2 * day, day, anchor) == (anchor, anchor + day)


@pytest.mark.parametrize(("value", "text"), [
    ("1h", "1 hour"), ("24h", "1 day"), ("90m", "1 hour 30 minutes"), ("1d", "1 day"), ("2d", "2 days"),
    ("45s", "45 seconds"), ("3661s", "1 hour 1 minute 1 second"), ("25h", "1 day 1 hour"), (0, "0 seconds"),
    (0.25, "0.25 seconds"), (-3600, "minus 1 hour"),
])
def test_durations_read_as_people_write_them(value, text):
    assert format_duration(parse_duration(value)) == text


def test_an_estimated_performance_drop_counts_only_with_performance_drop_on():
    def dropped(i: int) -> WindowOutcome:
        return WindowOutcome(T0 + i * H, T0 + (i + 1) * H, "no_drift", "passed", (), "drop_detected")

    off = decide(dropped(2), [dropped(0), dropped(1)], [], POLICY)
    assert not off.trigger and off.reasons == ["this window's drift status is no_drift"]
    on = RetrainingConfig(performance_drop=True)
    d = decide(dropped(2), [w(0, "no_drift"), dropped(1)], [], on)
    assert d.trigger and d.drifted_features == []
    assert d.reasons[0].startswith("drift or an estimated performance drop detected in 2 of the last 3 window(s)")
    assert "2 of them by an estimated performance drop alone" in d.reasons[0]
    assert d.evidence["performance"][-1][1] == "drop_detected"
    # mixed: drift in one window, a drop in another
    assert decide(w(2), [dropped(1)], [], on).trigger
    # a drop on data that failed quality is no evidence either
    failed = WindowOutcome(T0 + H, T0 + 2 * H, "skipped", "failed", (), "drop_detected")
    assert not decide(dropped(2), [w(0, "no_drift"), failed], [], on).trigger
    quiet = decide(w(2, "no_drift"), [], [], on)
    assert quiet.reasons == ["this window's drift status is no_drift and its estimated performance unknown"]


def test_a_drifted_segment_counts_only_with_segment_drift_on_and_is_named():
    def segment(i: int, *names: str) -> WindowOutcome:
        return WindowOutcome(T0 + i * H, T0 + (i + 1) * H, "no_drift", "passed", (), None, names)

    off = decide(segment(2, "region=north"), [segment(1, "region=north")], [], POLICY)
    assert not off.trigger and off.reasons == ["this window's drift status is no_drift"]
    on = RetrainingConfig(segment_drift=True)
    d = decide(segment(2, "region=north"), [w(0, "no_drift"), segment(1, "channel=web", "region=north")], [], on)
    assert d.trigger
    assert d.reasons[0].startswith("drift or drift in a segment detected in 2 of the last 3 window(s)")
    assert "2 of them by drift in a segment alone" in d.reasons[0]
    assert d.reasons[0].endswith("drifted segments: channel=web, region=north")
    assert d.evidence["segments"][-1] == [(T0 + 3 * H).isoformat(), ["region=north"]]
    # whole-window drift in one window and a segment's in the other: two detections, only one by a segment
    mixed = decide(segment(2, "region=north"), [w(1)], [], on)
    assert mixed.trigger and "1 of them by drift in a segment alone" in mixed.reasons[0]
    quiet = decide(segment(2), [], [], on)
    assert quiet.reasons == ["this window's drift status is no_drift and no segment drifted"]
    both = RetrainingConfig(segment_drift=True, performance_drop=True)
    dropped = WindowOutcome(T0 + H, T0 + 2 * H, "no_drift", "passed", (), "drop_detected")
    d = decide(segment(2, "region=west"), [dropped], [], both)
    assert d.trigger and "1 of them by an estimated performance drop alone" in d.reasons[0]
    assert "1 of them by drift in a segment alone" in d.reasons[0]
