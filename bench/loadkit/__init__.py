"""The sustained-load harness that bench/load.py runs, one module per part: the stack,
the feed, the dashboard poller, the sampler and the report."""
