"""Each flow's learned rhythm, for stale-feed detection (SPEC section 3).

A flow's expected silence is the longest gap between its consecutive events that began in
the same hour of the week as its last event, over the last 28 days, times 1.5, and at least
30 minutes. A flow with under 28 days or under 50 events of history uses the configured
threshold (`STALE_FLOW_MINUTES`, default 4 h). Hours of the week are by event time in the
firm's time zone, Monday 00:00–00:59 being hour 0.

The longest gaps are kept per flow in `FlowRhythm`, recomputed at most every
`RHYTHM_REFRESH` by the time-based rules: a busy flow's 28 days are millions of events.
"""
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from datetime import tzinfo
from itertools import pairwise

from django.conf import settings
from django.db import connection, connections
from django.db.models import Max
from django.utils import timezone

from . import models as state
from .timeline import firm_zone

HISTORY = dt.timedelta(days=28)
MIN_EVENTS = 50
FACTOR = 1.5
FLOOR = dt.timedelta(minutes=30)
RHYTHM_REFRESH = dt.timedelta(hours=1)


def hour_of_week(moment: dt.datetime, zone: tzinfo | None = None) -> int:
    """0 for Monday 00:00–00:59 in the firm's time zone, up to 167."""
    local = moment.astimezone(zone or firm_zone())
    return local.weekday() * 24 + local.hour


def configured_silence() -> dt.timedelta:
    """The silence that is normal for a flow with no rhythm learned (STALE_FLOW_MINUTES)."""
    return dt.timedelta(minutes=settings.STALE_FLOW_MINUTES)


def expected_silence(rhythm: "state.FlowRhythm | None", last_event_at: dt.datetime,
                     zone: tzinfo | None = None) -> dt.timedelta:
    """The silence after `last_event_at` that is still normal for a flow whose rhythm is
    `rhythm` (a FlowRhythm, or None when never learned)."""
    if rhythm is None or not rhythm.longest_gaps or rhythm.events < MIN_EVENTS or (
            rhythm.first_event_at is None
            or rhythm.computed_at - rhythm.first_event_at < HISTORY):
        return configured_silence()
    longest = rhythm.longest_gaps.get(str(hour_of_week(last_event_at, zone)))
    if longest is None:  # the flow never went quiet in this hour before: no rhythm to go by
        return configured_silence()
    return max(dt.timedelta(seconds=longest) * FACTOR, FLOOR)


def longest_gaps(times: Sequence[dt.datetime], zone: tzinfo | None = None) -> dict[int, float]:
    """{hour of week: longest gap in seconds} over sorted event times of one flow."""
    gaps: dict[int, float] = {}
    for earlier, later in pairwise(times):
        hour = hour_of_week(earlier, zone)
        gaps[hour] = max(gaps.get(hour, 0), (later - earlier).total_seconds())
    return gaps


def learn_rhythms(now: dt.datetime | None = None, force: bool = False) -> int:
    """Recompute every flow's rhythm if it is older than RHYTHM_REFRESH (or `force`)."""
    now = now or timezone.now()
    latest = state.FlowRhythm.objects.aggregate(at=Max("computed_at"))["at"]
    if not force and latest is not None and now - latest < RHYTHM_REFRESH:
        return 0
    since = now - HISTORY
    gaps, counts = _gaps_since(since, now)
    flows = set(gaps) | set(counts)
    older = {flow for flow in flows if state.SyncAttempt.objects.filter(
        flow=flow, occurred_at__lt=since).exists()}
    rows = []
    for flow in sorted(flows):
        rows.append(state.FlowRhythm(
            flow=flow, longest_gaps={str(h): s for h, s in sorted(gaps.get(flow, {}).items())},
            events=counts.get(flow, 0) if counts.get(flow, 0) >= MIN_EVENTS
            else _history_events(flow),
            # Older than the window is all that matters; the exact first event does not.
            first_event_at=since - dt.timedelta(seconds=1) if flow in older else
            _first_event(flow), computed_at=now))
    state.FlowRhythm.objects.exclude(flow__in=flows).delete()
    state.FlowRhythm.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["flow"],
        update_fields=["longest_gaps", "events", "first_event_at", "computed_at"])
    return len(rows)


def _history_events(flow: str) -> int:
    """The flow's events ever, counted up to MIN_EVENTS (enough to know it has a history)."""
    return len(state.SyncAttempt.objects.filter(flow=flow).values_list("pk", flat=True)
               [:MIN_EVENTS])


def _first_event(flow: str) -> dt.datetime | None:
    return (state.SyncAttempt.objects.filter(flow=flow).order_by("occurred_at")
            .values_list("occurred_at", flat=True).first())


def _gaps_since(since: dt.datetime, now: dt.datetime,
                ) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    """({flow: {hour: longest gap s}}, {flow: events}) for event times in [since, now]."""
    zone = firm_zone()
    if connection.vendor == "postgresql":
        table = state.SyncAttempt._meta.db_table
        with connections[state.SyncAttempt.objects.db].cursor() as cursor:
            # One pass over the window: each event's gap to the next, grouped by the hour of
            # the week the gap began in.
            cursor.execute(f"""
                SELECT flow, (extract(isodow FROM occurred_at AT TIME ZONE %s)::int - 1) * 24
                             + extract(hour FROM occurred_at AT TIME ZONE %s)::int,
                       max(extract(epoch FROM gap)), count(*)
                FROM (SELECT flow, occurred_at,
                             lead(occurred_at) OVER (PARTITION BY flow ORDER BY occurred_at)
                             - occurred_at AS gap
                      FROM {table} WHERE occurred_at >= %s AND occurred_at <= %s) g
                GROUP BY 1, 2""", [zone.key, zone.key, since, now])
            gaps: defaultdict[str, dict[int, float]] = defaultdict(dict)
            counts: defaultdict[str, int] = defaultdict(int)
            for flow, hour, longest, count in cursor.fetchall():
                counts[flow] += count
                if longest is not None:
                    gaps[flow][hour] = float(longest)
            return gaps, counts
    times = defaultdict(list)
    for flow, moment in (state.SyncAttempt.objects.filter(occurred_at__gte=since,
                                                          occurred_at__lte=now)
                         .order_by("flow", "occurred_at").values_list("flow", "occurred_at")):
        times[flow].append(moment)
    return ({flow: longest_gaps(moments, zone) for flow, moments in times.items()},
            {flow: len(moments) for flow, moments in times.items()})
