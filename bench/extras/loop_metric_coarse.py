# A --hub-config-extra file (bench/run.py): JupyterHub's event-loop metric every 0.5 s instead of
# every 50 ms, as jupyterhub_config.example.py sets it (both packages' hubs get it alike).
#   bash bench/run.sh --sqlite-wal --only sched --hub-config-extra bench/extras/loop_metric_coarse.py
c.PeriodicMetricsCollector.event_loop_interval_resolution = 0.5  # noqa: F821 - c: the hub's config
