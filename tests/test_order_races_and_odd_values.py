"""Orders under races and odd values: an import racing the worker's hold, two imports of one
order at once, numbers no JSON column can store."""
import json
import threading

from core.testing import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_order_imported_while_the_worker_holds_its_cancel_still_gets_cancelled(
        bc, admin, app, worker, monkeypatch):
    """The webhook beats the import, and the import lands while the worker is recording the
    deferral: whichever commits second must see the other's row (on PostgreSQL neither sees the
    other's uncommitted one), so the cancel is applied, never held until its window runs out."""
    from core import orders
    channel = bc.create()
    bc.order(250, status_id=5)
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]

    original, importer = orders._hold, {}

    def import_order():
        importer["response"] = app.test_client().post("/api/v1/orders", headers=AUTH, json={
            "channel_id": channel["id"], "channel_order_id": "250",
            "status": "AWAITING_SHIPMENT"})

    def hold_while_the_order_is_imported(session, *args, **kwargs):
        held = original(session, *args, **kwargs)
        session.flush()
        thread = threading.Thread(target=import_order)
        thread.start()
        # PostgreSQL: the import may finish now. SQLite: it waits for the worker's commit.
        thread.join(timeout=2)
        importer["thread"] = thread
        return held

    monkeypatch.setattr(orders, "_hold", hold_while_the_order_is_imported)
    worker.run_until_idle()
    importer["thread"].join(timeout=60)
    assert importer["response"].status_code == 201, importer["response"].get_json()
    order = admin.get(f"/orders/{importer['response'].get_json()['id']}")
    assert order["status"] == "CANCELLED"
    assert order["held_intents"] == []
    assert admin.get(f"/deliveries/{delivery_id}")["outcome"] == "applied"


def test_order_customer_with_non_finite_numbers_is_422_not_500(bc, admin):
    """Python's JSON reader takes NaN and Infinity; no JSON column stores them (PostgreSQL
    refuses the insert) and no JSON reader could read them back: a 422, never a 500."""
    channel = bc.create()
    body = ('{"channel_id": %d, "channel_order_id": "250", "status": "AWAITING_SHIPMENT", '
            '"customer": {"score": NaN, "limit": Infinity}}' % channel["id"])
    response = admin.client.post("/api/v1/orders", data=body, headers={
        **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422, response.data
    assert response.get_json()["error"] == "unprocessable_entity"
    assert admin.get(f"/orders?channel_id={channel['id']}") == []
    json.loads(response.data)  # the answer itself is valid JSON


def test_an_order_imported_twice_at_once_is_409_not_500(bc, admin, make_order, monkeypatch):
    """Two imports of one order racing (e.g. the order-routing system retrying a slow import):
    both pass the "already exists?" check before either commits, the second insert then hits
    the unique constraint: the documented 409, never a 500."""
    from core.api import orders as orders_api
    channel = bc.create()
    make_order(channel["id"], 250)
    # The second import's check ran before the first import committed: it saw no order.
    monkeypatch.setattr(orders_api.orders, "find_order", lambda *args, **kwargs: None)
    response = admin.request("POST", "/orders", json={
        "channel_id": channel["id"], "channel_order_id": "250", "status": "AWAITING_SHIPMENT"})
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"] == "conflict"
    monkeypatch.undo()
    assert len(admin.get(f"/orders?channel_id={channel['id']}")) == 1
