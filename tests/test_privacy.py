"""Privacy requests blank the refund notes kept with imported orders' RMAs — on the RMA, in its
delivery's recorded intents, in a refund held for an order not imported yet, and in events
written with a note — for that customer's orders (customers/redact) or all the shop's
(shop/redact); the rest of the RMA stays. Through the real intake, worker, database and API."""
from sqlalchemy import select

from tests.shopify_helpers import customers_redact, shop_redact
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
from tests.test_events import all_events
from tests.test_orders_from_channel import ORDER_ID, new_order, the_order
from tests.test_rmas import refund, setup_channel

NOTE = "Things were damaged"  # the published refund sample's note
OTHER_ORDER = 555
OTHER_REFUND = 777


def other_customer():
    return {"id": 42, "email": "ada@example.com", "first_name": "Ada", "last_name": "L"}


def two_customers_with_rmas(shopify, admin, worker):
    """John (the samples' customer) and Ada each have a shipped order with a refund's RMA."""
    channel = setup_channel(shopify, admin)
    shopify.send("orders/create", new_order(financial_status="paid"))
    shopify.send("orders/create", new_order(order_id=OTHER_ORDER, financial_status="paid",
                                            customer=other_customer(),
                                            email="ada@example.com"))
    worker.run_until_idle()
    johns, adas = the_order(admin, channel), the_order(admin, channel, OTHER_ORDER)
    for order in (johns, adas):
        admin.patch(f"/orders/{order['id']}", {"status": "SHIPPED"})
    john_refund = shopify.send("refunds/create", refund())
    shopify.send("refunds/create", refund(refund_id=OTHER_REFUND, order_id=OTHER_ORDER,
                                          note="Ada's parcel came back"))
    worker.run_until_idle()
    return channel, johns, adas, john_refund


def rma_of(admin, order):
    [rma] = admin.get(f"/orders/{order['id']}")["rmas"]
    return admin.get(f"/rmas/{rma['id']}")


def test_customers_redact_blanks_that_customers_refund_notes_and_keeps_the_rma(shopify, admin,
                                                                             worker):
    channel, johns, adas, john_refund = two_customers_with_rmas(shopify, admin, worker)
    before = rma_of(admin, johns)
    assert before["note"] == NOTE
    recorded = admin.get(f"/deliveries/{john_refund.get_json()['delivery_id']}")
    assert recorded["intents"][0]["note"] == NOTE
    request = shopify.send("customers/redact", customers_redact(orders=()))
    worker.run_until_idle()
    after = rma_of(admin, johns)
    assert after["note"] is None
    assert after["history"][-1]["event"] == "redacted"
    assert after["history"][-1]["actor"] == "privacy"
    # the rest of the RMA stays
    assert [line["amount"] for line in after["lines"]] == [line["amount"]
                                                           for line in before["lines"]]
    assert after["status"] == "open" and after["channel_refund_id"] == before["channel_refund_id"]
    recorded = admin.get(f"/deliveries/{john_refund.get_json()['delivery_id']}")
    assert recorded["intents"][0]["note"] is None
    assert recorded["intents"][0]["channel_refund_id"] == before["channel_refund_id"]
    history = the_order(admin, channel)["history"][-1]
    assert history["event"] == "redacted"
    assert history["message"] == ("customer personal data removed on request (the customer and "
                                  "the addresses and 1 refund note(s))")
    reason = admin.get(f"/deliveries/{request.get_json()['delivery_id']}")["reason"]
    assert "1 order(s)" in reason and "1 refund note(s)" in reason
    # Ada's RMA is not hers to redact
    assert rma_of(admin, adas)["note"] == "Ada's parcel came back"


def test_shop_redact_blanks_every_refund_note_of_the_shop(shopify, admin, worker):
    channel, johns, adas, _ = two_customers_with_rmas(shopify, admin, worker)
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    shopify.uninstall()
    request = shopify.send("shop/redact", shop_redact())
    worker.run_until_idle()
    assert rma_of(admin, johns)["note"] is None and rma_of(admin, adas)["note"] is None
    reason = admin.get(f"/deliveries/{request.get_json()['delivery_id']}")["reason"]
    assert "all of the shop's" in reason and "2 refund note(s)" in reason
    for listed in admin.get("/deliveries"):
        delivery = admin.get(f"/deliveries/{listed['id']}")
        assert all(intent.get("note") is None for intent in delivery["intents"] or ())


def test_rma_created_events_carry_no_note_and_older_ones_lose_theirs(shopify, admin, worker,
                                                                     app):
    from core import events
    from core.models import Event
    channel, johns, adas, _ = two_customers_with_rmas(shopify, admin, worker)
    created = [e for e in all_events(app) if e.type == "rma.created"]
    assert len(created) == 2 and all("note" not in e.data["rma"] for e in created)
    # events written by a version that put the note in them
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        for order, note in ((johns, NOTE), (adas, "Ada's note")):
            events.emit(session, "rma.created", {"rma": {"id": 99, "order_id": order["id"],
                                                         "note": note}, "delivery_id": None},
                        channel_id=channel["id"], order_key=f"order:{order['id']}")
    shopify.send("customers/redact", customers_redact(orders=()))
    worker.run_until_idle()
    with db.Session() as session:
        notes = {e.order_key: e.data["rma"].get("note") for e in session.scalars(
            select(Event).where(Event.type == "rma.created", Event.data.is_not(None)))
            if "note" in e.data["rma"]}
    assert notes == {f"order:{johns['id']}": None, f"order:{adas['id']}": "Ada's note"}


def test_a_refund_held_for_an_order_not_imported_loses_its_note(shopify, admin, worker, app):
    from core.models import PendingIntent
    setup_channel(shopify, admin, webhooks=["refund_pos", "refund_ecommerce"])
    held = shopify.send("refunds/create", refund())
    worker.run_until_idle()
    assert admin.get(f"/deliveries/{held.get_json()['delivery_id']}")["outcome"] == "deferred"
    db = app.extensions["orderhooks.db"]

    def held_notes():
        with db.Session() as session:
            return [row.intent.get("note") for row in session.scalars(select(PendingIntent))]

    assert held_notes() == [NOTE]
    shopify.send("customers/redact", customers_redact(orders=(ORDER_ID,)))
    worker.run_until_idle()
    assert held_notes() == [None]


def test_a_refund_and_its_redaction_in_one_batch_leave_no_note(shopify, admin, app):
    """The worker records a batch without autoflush: the redaction still finds the RMA, event
    and recorded intents the batch's refund wrote just before it."""
    from core.worker import Worker
    channel = setup_channel(shopify, admin)
    shopify.send("orders/create", new_order(financial_status="paid"))
    Worker(app, name="first").run_until_idle()
    order = the_order(admin, channel)
    admin.patch(f"/orders/{order['id']}", {"status": "SHIPPED"})
    sent = shopify.send("refunds/create", refund())
    shopify.send("customers/redact", customers_redact())
    assert Worker(app, name="one-batch").run_until_idle() == 2
    assert rma_of(admin, order)["note"] is None
    assert admin.get(f"/deliveries/{sent.get_json()['delivery_id']}")["intents"][0]["note"] \
        is None
