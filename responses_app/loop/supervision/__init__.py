"""Loop supervision: where loops run (dispatch, host), liveness (activity), the database thread, the reaper."""
