"""What a new BigCommerce order costs in API calls: its order, its products and its shipping
addresses, each read once — whether it arrives as store/order/created, as a cancellation or
payment of an order the service does not know yet (imported first), or as a burst of deliveries
for one new order in one batch. ``responses`` counts every call."""
from collections import Counter
from datetime import timedelta

import pytest
import requests

from core.clock import utcnow
from core.models import StoredDelivery
from core.worker import Worker
from plugins.bigcommerce import client as bc_client
from plugins.bigcommerce.reads import RecentOrders
from tests.conftest import BC_STORE, STORE
from tests.test_orders_from_channel import bc_channel, bc_order, outcome, the_order
# The fake clock of the client, and a pacer that forgets every window, for each test here.
from tests.test_ratelimit import clock  # noqa: F401 (a fixture)

ORDER = f"{BC_STORE}/v2/orders/250"


def calls(bc) -> Counter:
    """The order's API calls by what they read: order, products, shipping_addresses,
    shipments."""
    counted = Counter()
    for call in bc.api.calls:
        path = call.request.url.split("?")[0]
        if path == ORDER:
            counted["order"] += 1
        elif path.startswith(ORDER + "/"):
            counted[path[len(ORDER) + 1:]] += 1
    return counted


THREE_READS = {"order": 1, "products": 1, "shipping_addresses": 1}


def test_order_created_costs_three_calls(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=11)
    created = bc.send(scope="store/order/created")
    worker.run_until_idle()
    assert the_order(admin, channel, 250)["status"] == "UNPROCESSED"
    assert outcome(admin, created)["outcome"] == "applied"
    assert calls(bc) == THREE_READS


def test_a_shipped_order_created_reads_no_shipments(bc, admin, worker):
    """A creation imports the order as it is: its shipments are a fulfilment's business."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=2)
    bc.shipments(250, [{"id": 5, "tracking_number": "Z1"}])
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    assert the_order(admin, channel, 250) is not None
    assert calls(bc) == THREE_READS


@pytest.mark.parametrize("previous, status, imported_as", [
    (7, 5, "CANCELLED"),        # a cancellation of an order not known yet
    (7, 11, "UNPROCESSED"),     # its payment: out of Awaiting Payment into a paid status
])
def test_status_updated_for_an_unknown_order_imports_it_from_the_same_read(
        bc, admin, worker, previous, status, imported_as):
    """The order read to translate the status change is the one imported: no second read."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=status)
    update = bc.send(new_status=status, previous=previous)
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == imported_as and order["history"][0]["event"] == "created"
    assert len(order["lines"]) == 2
    assert outcome(admin, update)["state"] == "done"
    assert calls(bc) == THREE_READS


def test_a_shipped_unknown_order_also_reads_its_shipments(bc, admin, worker):
    """A fulfilment of an order not known yet: the order, products and addresses to import
    it, and the shipments the fulfilment records — the order still read once."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=2, items_shipped=2)
    bc.shipments(250, [{"id": 5, "tracking_number": "Z1", "items": []}])
    shipped = bc.send(new_status=2, previous=11)
    worker.run_until_idle()
    assert the_order(admin, channel, 250)["history"][0]["event"] == "created"
    assert outcome(admin, shipped)["intents"][-1]["kind"] == "Fulfill"
    assert calls(bc) == {**THREE_READS, "shipments": 1}


def test_a_burst_for_one_new_order_costs_three_calls(bc, admin, worker):
    """Several deliveries for one order not known yet, in one batch (paid, then cancelled, and
    the order updated twice; no creation among them): one read of the order, one import."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=5)
    sent = [bc.send(new_status=11, previous=7, created_at=1),
            bc.send(scope="store/order/updated", created_at=2),
            bc.send(new_status=5, previous=11, created_at=3),
            bc.send(scope="store/order/updated", created_at=4)]
    assert worker.run_until_idle() == len(sent)
    order = the_order(admin, channel, 250)
    assert order["status"] == "CANCELLED"
    assert [h["event"] for h in order["history"]][:2] == ["created", "cancelled"]
    assert all(outcome(admin, r)["state"] == "done" for r in sent)
    assert calls(bc) == THREE_READS


def test_a_burst_with_the_creation_costs_three_calls(bc, admin, worker):
    """The creation among them: it imports the order; the others share its read."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=11)
    bc.send(new_status=11, previous=7, created_at=1)
    bc.send(scope="store/order/created", created_at=2)
    bc.send(scope="store/order/updated", created_at=3)
    worker.run_until_idle()
    assert the_order(admin, channel, 250)["status"] == "UNPROCESSED"
    assert calls(bc) == THREE_READS


def test_recent_orders_hands_each_order_out_once_and_keeps_only_the_newest():
    recent = RecentOrders(size=2)
    for order_id in ("1", "2", "3"):
        recent.keep(7, order_id, {"id": int(order_id)})
    assert recent.take(7, "1") is None  # the oldest made room
    assert recent.take(8, "2") is None  # another channel's order 2 was never read
    assert recent.take(7, "2") == ({"id": 2}, None)
    assert recent.take(7, "2") is None
    assert recent.take(7, "3") == ({"id": 3}, None)


def test_recent_orders_give_back_the_calls_held_for_imports_they_drop():
    """An order kept for an import holds that import's calls in its store's window; when it
    is dropped unused (room made, the channel's next batch) the calls are given back."""
    pacer = bc_client.StorePacer()
    recent = RecentOrders(size=1)
    holds = []
    for order_id in ("1", "2"):
        assert pacer.reserve("s", 2) == 0.0
        holds.append(bc_client.Hold(pacer, "s", 2))
        recent.keep(7, order_id, {"id": int(order_id)}, holds[-1])
    assert holds[0].calls == 0 and holds[1].calls == 2  # order 1 made room: its calls are back
    assert pacer._windows["s"][2] == 2
    recent.drop(7)
    assert recent.take(7, "2") is None and pacer._windows["s"][2] == 0


# -- the store's rate-limit window running out halfway through an import ---------------------


def window_runs_out_at_the_order_read(bc, order_id=250, left=bc_client.RESERVE):
    """The order's read answers that the store's window is down to ``left`` calls (not more
    than the reserve kept for calls in flight) for 5 s: any call after it outside a hold
    would wait for the next window (the delivery rescheduled)."""
    url = f"{BC_STORE}/v2/orders/{order_id}"
    response = next(r for r in bc.api.registered() if r.url == url)
    response.headers = {"X-Rate-Limit-Requests-Left": str(left),
                        "X-Rate-Limit-Time-Reset-Ms": "5000",
                        "X-Rate-Limit-Requests-Quota": "150"}


def window_left(left: int) -> None:
    """An answer just told the store's pacer that ``left`` calls are left for 5 s."""
    answer = requests.Response()
    answer.status_code = 200
    answer.headers.update({"X-Rate-Limit-Requests-Left": str(left),
                           "X-Rate-Limit-Time-Reset-Ms": "5000"})
    bc_client.PACER.observe(STORE, answer)


def next_window(app, clock):
    """The window is over: every delivery waiting for it is due again, for a new worker."""
    clock.advance(5.1)
    with app.extensions["orderhooks.db"].session() as session:
        for row in session.query(StoredDelivery).filter_by(state="pending"):
            row.next_attempt_at = utcnow() - timedelta(seconds=1)
    return Worker(app, name="next-window")


@pytest.mark.parametrize("how", ["created", "paid"])
def test_an_import_cut_by_the_window_never_pays_a_fourth_call(bc, admin, worker, app, clock,
                                                              how):
    """The window runs out between the order's read and its products and addresses: those
    two calls were held with the read, so the import finishes in the same window — three
    calls, nothing rescheduled, no 429 — whether the order comes by its creation or by its
    payment (imported by the worker from the read that translated the delivery)."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=11)
    window_runs_out_at_the_order_read(bc)
    sent = (bc.send(scope="store/order/created") if how == "created"
            else bc.send(new_status=11, previous=7))
    worker.run_until_idle()
    assert outcome(admin, sent)["state"] == "done"
    assert the_order(admin, channel, 250)["status"] == "UNPROCESSED"
    assert calls(bc) == THREE_READS
    assert clock.sleeps == []
    assert not any(c.response is not None and c.response.status_code == 429
                   for c in bc.api.calls)


@pytest.mark.parametrize("how", ["created", "paid"])
def test_an_import_that_does_not_fit_the_window_waits_for_the_next_without_a_call(
        bc, admin, worker, app, clock, how):
    """Fewer calls left in the window than an import and the reserve need: the order is not
    read at all; the delivery waits for the next window, where it costs three calls."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=11)
    window_left(bc_client.RESERVE + 2)
    sent = (bc.send(scope="store/order/created") if how == "created"
            else bc.send(new_status=11, previous=7))
    worker.run_until_idle()
    delivery = outcome(admin, sent)
    assert delivery["state"] == "pending" and "throttled" in delivery["reason"]
    assert calls(bc) == {}
    assert the_order(admin, channel, 250) is None

    assert next_window(app, clock).run_until_idle() == 1
    assert the_order(admin, channel, 250)["status"] == "UNPROCESSED"
    assert calls(bc) == THREE_READS



@pytest.mark.parametrize("left", [None, bc_client.RESERVE + 1])
def test_a_known_order_costs_one_read(bc, admin, worker, app, clock, left):
    """An order the service knows is not imported again: its status change costs the order
    read alone. The worker tells the plugin which orders it holds, so that read holds no
    import's calls: it goes ahead in a window with room for one call and the reserve
    (``left``), where an import's three would wait."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=7)
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    bc.api.calls.reset()
    bc_order(bc, status_id=5)
    if left is not None:
        window_left(left)
    cancelled = bc.send(new_status=5, previous=7, created_at=1561479999)
    worker.run_until_idle()
    assert outcome(admin, cancelled)["outcome"] == "applied"
    assert the_order(admin, channel, 250)["status"] == "CANCELLED"
    assert calls(bc) == {"order": 1}
