"""The worker's periodic jobs: expire held intents, refresh the lag gauge, check channel
subscriptions and purge what retention lets go — each when it is due, by exactly one worker."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import select

from . import metrics, orders
from .clock import utcnow
from .db import Database
from .models import WorkerState
from . import retention
from .subscriptions import check_all

#: Seconds between two rounds of one worker's housekeeping.
ROUND_SECONDS = 5.0
#: Seconds between two retention purges (by any worker).
PURGE_SECONDS = 3600
#: Longest a worker spends purging in one round: a purge with more to do goes on in the next
#: round (``ROUND_SECONDS`` later), so deliveries never wait long behind it.
PURGE_ROUND_SECONDS = 2.0


class Housekeeping:
    def __init__(self, app):
        self.app = app
        self.config = app.config
        self.db: Database = app.extensions["orderhooks.db"]
        self._last_round = 0.0
        #: The last purge stopped at its time budget: this worker goes on at its next round.
        self._purge_unfinished = False

    def run(self, force: bool = False) -> None:
        """One round, unless this worker ran one less than ``ROUND_SECONDS`` ago."""
        now = time.monotonic()
        if not force and now - self._last_round < ROUND_SECONDS:
            return
        self._last_round = now
        with self.db.session() as session:
            orders.expire_held(session)
        # Waiting rows only (an index range), never a walk over the processed history.
        metrics.update_lag(self.db)
        if self.due("subscriptions_checked_at", self.config["SUBSCRIPTION_CHECK_SECONDS"]):
            check_all(self.app)
        interval = ROUND_SECONDS if self._purge_unfinished else PURGE_SECONDS
        if self.due("retention_purged_at", interval):
            done = retention.purge(self.db, self.config, seconds=PURGE_ROUND_SECONDS)
            self._purge_unfinished = not done.finished

    def due(self, key: str, interval: int) -> bool:
        """True for exactly one worker once per ``interval`` seconds: a lease kept in the
        ``worker_state`` row ``key`` (locked, skipping a row another worker holds)."""
        now = utcnow()
        with self.db.session() as session:
            query = select(WorkerState).where(WorkerState.key == key)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            state = session.scalars(query).first()
            if state is None:
                try:
                    with session.begin_nested():
                        session.add(WorkerState(key=key, value=now.isoformat()))
                except Exception:  # noqa: BLE001 — another worker inserted it first
                    return False
                return True
            if state.value and now - datetime.fromisoformat(state.value) < timedelta(
                    seconds=interval):
                return False
            state.value = now.isoformat()
            return True
