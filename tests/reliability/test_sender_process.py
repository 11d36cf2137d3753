"""The outbound sender as a process of its own (``orderhooks sender``) beside workers started
with ``--no-sender``, as ``orderhooks serve`` lays them out on PostgreSQL: a worker without
its sender sends nothing, the sender sends what waits when it starts, and afterwards it is
woken by the events bell, not its idle wait; SIGTERM stops it after its current step."""
from __future__ import annotations

import time

from standardwebhooks.webhooks import Webhook

from tests.webhook_receiver import Receiver

from .live import Stack, db_engine, delivery_body, scalar, wait_for


def test_a_sender_process_sends_what_workers_without_one_numbered(database_url, tmp_path):
    receiver = Receiver()
    # 30 s idle waits: a prompt arrival is the bells' doing (the inbox's, then the events')
    env = {"ORDERHOOKS_ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
           "ORDERHOOKS_WORKER_IDLE_SECONDS": "30"}
    try:
        with Stack(database_url, tmp_path / "live", env=env) as stack:
            channel, created = stack.start_outbound("apart", receiver.url("/hooks"))
            stack.start_worker(sender=False)
            stack.create_order(channel["id"], 1)
            assert stack.post_delivery(channel, delivery_body("apart", 1)[0]).status_code == 200
            engine = db_engine(database_url)
            wait_for(lambda: scalar(engine, "SELECT count(*) FROM webhook_messages") == 1, 30,
                     what="the cancellation's message")
            time.sleep(1.0)
            assert receiver.at("/hooks") == []  # the worker alone sends nothing
            sender = stack.start_sender()
            wait_for(lambda: len(receiver.at("/hooks")) == 1, 30, what="the waiting message")
            time.sleep(1.0)  # worker and sender idle now, each for 30 s unless rung
            for n in (2, 3):
                stack.create_order(channel["id"], n)
                started = time.monotonic()
                assert stack.post_delivery(channel,
                                           delivery_body("apart", n)[0]).status_code == 200
                wait_for(lambda: len(receiver.at("/hooks")) == n, 20, interval=0.02,
                         what=f"cancellation {n} at the receiver")
                assert time.monotonic() - started < 5.0
            assert sender.stop(timeout=20) == 0
            assert any(e.get("message") == "sender.stopped" or e.get("event") == "sender.stopped"
                       for e in sender.json_logs()), sender.log_lines()[-10:]
            engine.dispose()
        orders = []
        for got in receiver.at("/hooks"):
            payload = Webhook(created["secret"]).verify(got.body, got.headers)
            assert payload["type"] == "order.cancelled"
            orders.append(payload["data"]["order"]["channel_order_id"])
        assert orders == ["1", "2", "3"]
    finally:
        receiver.stop()
