"""Exception rules: conditions in the business state that become owned cases."""


def on_batch_processed(outcome):
    """Event-driven rules, run after each processed inbox batch."""


def evaluate_time_rules():
    """Time-driven rules, run by beat and by `process_inbox`."""
