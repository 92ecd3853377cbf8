-- The retraining trigger's real outcome on a window's decision row. `outcome` of a decision is now
--   no_trigger      the policy held retraining back (the reasons say why)
--   trigger         the policy decided to retrain; the trigger has not reported yet
--   triggered       the retraining run `run_id` was created (or already existed)
--   trigger_failed  no retraining run started (`trigger_error` says why, e.g. the target DAG is paused)
-- and `triggered` is false once the trigger is known to have failed. The cooldown and the daily cap
-- count `trigger` and `triggered` decisions only, so a failed trigger does not hold back the next window.
ALTER TABLE monitoring.retraining_events ADD COLUMN IF NOT EXISTS trigger_error text;

COMMENT ON COLUMN monitoring.retraining_events.outcome IS
    'decision: no_trigger | trigger | triggered | trigger_failed; training: promoted | rejected | failed';
COMMENT ON COLUMN monitoring.retraining_events.trigger_error IS
    'decision rows with outcome trigger_failed: why the retraining run did not start';
