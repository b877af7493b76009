"""monitor_drift: compare a production batch of texts with the reference data and decide whether it drifted."""
