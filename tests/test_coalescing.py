"""Deliveries for the same BigCommerce order waiting at once cost one order read."""
from tests.conftest import BC_STORE


def calls_to(api, suffix):
    return sum(1 for call in api.calls if call.request.url.split("?")[0].endswith(suffix))


def test_deliveries_for_one_order_share_one_read(bc, admin, make_order, worker, api):
    channel = bc.create()
    order = make_order(channel["id"], 300)
    bc.order(300, status_id=2)
    bc.shipments(300, [{"id": 5, "tracking_number": "Z1"}])
    bc.send(order_id=300, new_status=2, created_at=1)
    bc.send(order_id=300, scope="store/order/updated", created_at=2)
    shipment = {"scope": "store/shipment/created", "store_id": "1", "hash": "h-ship",
                "data": {"type": "shipment", "id": 5, "orderId": 300}, "created_at": 3,
                "producer": "stores/abc123"}
    bc.send(shipment)
    before_orders = calls_to(api, f"{BC_STORE}/v2/orders/300")
    assert worker.run_until_idle() == 3
    assert calls_to(api, "/v2/orders/300") - before_orders == 1
    assert calls_to(api, "/v2/orders/300/shipments") == 1
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "SHIPPED"
    events = [h["event"] for h in detail["history"]]
    assert events.count("shipped") == 1 and events.count("ignored") == 2
    outcomes = sorted(d["outcome"] for d in admin.get("/deliveries"))
    assert outcomes == ["applied", "ignored", "ignored"]


def test_small_store_is_served_while_big_store_has_a_backlog(bc, admin, make_order, worker,
                                                             app, make_channel, api):
    """Claims are shared across channels: a batch never holds only the big store's backlog."""
    big = bc.create()
    small = make_channel("bigcommerce", {"store_hash": "small1", "access_token": "t",
                                         "api_base_url": "https://bc.test"}, cancel=(),
                         fulfill=())
    app.config["WORKER_BATCH"] = 10
    for n in range(30):
        bc.send(order_id=1000 + n, created_at=n)
    from core.testing import channel_view
    secret = channel_view(app, small["id"]).webhook_secret
    bc.client.post(f"/webhooks/bigcommerce/{small['id']}", json=bc.payload(order_id=7),
                   headers={"X-Orderhooks-Secret": secret})
    claimed = worker.claim()
    from core.models import StoredDelivery
    with app.extensions["orderhooks.db"].Session() as session:
        channels = {session.get(StoredDelivery, i).channel_id for i in claimed}
    assert len(claimed) == 10
    assert channels == {big["id"], small["id"]}


def test_a_batch_reads_its_orders_concurrently_and_each_gets_its_own_answer(
        bc, admin, make_order, worker, api):
    """Different orders of one batch are read at once (up to the adapter's ``concurrency``),
    not one after the other; every order still gets the answer for itself."""
    import json
    import threading
    import time

    import responses

    from plugins.bigcommerce.plugin import BigCommerceAdapter

    channel = bc.create()
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow_order(request):
        order_id = int(request.url.split("?")[0].rsplit("/", 1)[1])
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)  # an API call's latency: the other reads overlap it
        with lock:
            state["now"] -= 1
        status = 5 if order_id % 2 else 11  # odd: cancelled; even: awaiting fulfilment
        return 200, {}, json.dumps({"id": order_id, "status_id": status, "items_total": 1,
                                    "items_shipped": 0, "is_deleted": False})

    ids = list(range(400, 412))
    for order_id in ids:
        make_order(channel["id"], order_id)
        api.add_callback(responses.GET, f"{BC_STORE}/v2/orders/{order_id}", callback=slow_order)
        assert bc.send(order_id=order_id).status_code == 200
    assert worker.run_until_idle() == len(ids)
    assert 1 < state["max"] <= BigCommerceAdapter.concurrency
    by_order = {d["channel_order_id"]: d["outcome"] for d in admin.get("/deliveries")}
    assert by_order == {str(i): "applied" if i % 2 else "ignored" for i in ids}


def test_a_store_keeps_its_api_client_between_batches_until_its_credentials_change(bc):
    """Connections are reused from batch to batch (no TLS handshake per batch); new credentials
    get a new client, and the old one is closed."""
    from dataclasses import replace

    from core.testing import channel_view
    from plugins.bigcommerce.plugin import BigCommerceAdapter

    channel = channel_view(bc.app, bc.create()["id"])
    adapter = BigCommerceAdapter()
    adapter.allowed_api_base_urls = bc.app.extensions["orderhooks.channel_types"].get(
        "bigcommerce").allowed_api_base_urls  # the stand-in's host, as the app allows it
    first = adapter.client(channel)
    assert adapter.client(channel) is first
    edited = replace(channel, credentials={**channel.credentials, "access_token": "token-2"})
    second = adapter.client(edited)
    assert second is not first and adapter.client(edited) is second
    assert len(adapter._clients) == 1  # the old credentials' client is gone

    adapter.kept_clients = 2
    others = [replace(channel, id=channel.id + n) for n in (1, 2, 3)]
    for other in others:
        adapter.client(other)
    assert len(adapter._clients) == 2
    assert adapter.client(others[-1]) is adapter.client(others[-1])


def test_a_new_kind_of_read_is_one_entry_in_the_table_and_is_coalesced(bc, admin, worker, api,
                                                                       monkeypatch):
    """The coalescing belongs to the table, not to a kind: one more entry (here customers,
    read from ``/v2/customers/{id}``) and a batch's deliveries naming one customer cost one
    read of it, each delivery getting its own result."""
    import responses

    from orderhooks import Ignore
    from plugins.bigcommerce import plugin, reads

    customers = reads.ReadKind(
        "customer", lambda scope: scope == "store/customer/updated",
        lambda scope, data, payload, channel: str(data["id"]),
        lambda group, channel, new: 1,
        lambda client, customer_id, hold: client.json("GET", f"/v2/customers/{customer_id}",
                                                      hold=hold),
        lambda batch, customer_id, answer, group, hold: [
            [Ignore(f"customer {customer_id} ({answer['email']}), change {data['change']}")]
            for _, data in group],
        "/v2/customers/{}", "customer")
    monkeypatch.setattr(plugin, "READ_KINDS", (customers, *reads.READ_KINDS))
    bc.create()
    api.add(responses.GET, f"{BC_STORE}/v2/customers/7", json={"id": 7, "email": "a@example.com"})
    for change in range(3):
        assert bc.send({"scope": "store/customer/updated", "store_id": "1", "hash": f"c{change}",
                        "data": {"type": "customer", "id": 7, "change": change},
                        "created_at": change, "producer": "stores/abc123"}).status_code == 200
    assert worker.run_until_idle() == 3
    assert calls_to(api, "/v2/customers/7") == 1
    assert sorted(d["reason"] for d in admin.get("/deliveries")) == [
        f"customer 7 (a@example.com), change {n}" for n in range(3)]
