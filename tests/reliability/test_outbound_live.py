"""Outbound webhooks from real ``orderhooks worker`` processes: changes reach a loopback
receiver signed, and a worker killed with SIGKILL while sending loses nothing (the messages
it had in flight are sent again by the next worker: at least once, same webhook-id)."""
from __future__ import annotations

import signal
from datetime import timedelta

from sqlalchemy import text

from standardwebhooks.webhooks import Webhook

from core.clock import utcnow
from core.sender import ORDER_LANES

from tests.webhook_receiver import Receiver

from .live import db_engine, delivery_body, scalar, wait_for


def test_changes_reach_the_receiver_and_a_killed_sender_loses_nothing(database_url, tmp_path):
    from .live import Stack
    receiver = Receiver(slow_seconds=0.3)
    env = {"ORDERHOOKS_ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
           "ORDERHOOKS_WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,0.5,0.5,0.5",
           "ORDERHOOKS_WEBHOOK_TIMEOUT_SECONDS": "2"}
    try:
        with Stack(database_url, tmp_path / "live", env=env) as stack:
            channel, created = stack.start_outbound("out", receiver.url("/hooks"))
            receiver.behave("/hooks", "slow")  # each answer takes 0.3 s: sends are in flight
            orders = 20
            for n in range(orders):
                stack.create_order(channel["id"], n)
                assert stack.post_delivery(channel, delivery_body("out", n)[0]).status_code == 200
            worker = stack.start_worker()
            wait_for(lambda: len(receiver.at("/hooks")) >= 3, 60, what="the first POSTs")
            worker.signal(signal.SIGKILL)
            worker.popen.wait(timeout=10)
            got_before = len(receiver.at("/hooks"))
            engine = db_engine(database_url)
            # the killed sender's lease on the endpoint would run out within 60 s: expire it
            # now, as the clock would
            with engine.begin() as conn:
                conn.execute(text("UPDATE webhook_endpoints SET lease_until = :past"),
                             {"past": utcnow() - timedelta(seconds=1)})
            stack.start_worker()
            wait_for(lambda: scalar(engine, "SELECT count(*) FROM webhook_messages WHERE "
                                            "state = 'delivered'") == orders, 120,
                     what="every message delivered")
            engine.dispose()
        ids = [r.headers["webhook-id"] for r in receiver.at("/hooks")]
        assert len(set(ids)) == orders  # every cancellation's event arrived...
        # ...at most the unrecorded ones twice: per lane, one in flight and one answered
        # within the last recording stretch (0.5 s of 0.3 s answers)
        assert len(ids) - orders <= 2 * ORDER_LANES
        for got in receiver.at("/hooks"):
            payload = Webhook(created["secret"]).verify(got.body, got.headers)
            assert payload["type"] == "order.cancelled"
            assert payload["data"]["order"]["status"] == "CANCELLED"
        print(f"\noutbound: {got_before} POSTs before the kill, {len(ids)} in all for "
              f"{orders} events")
    finally:
        receiver.stop()
