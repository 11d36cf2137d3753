import copy
import hashlib
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import pytest
import responses

pytest_plugins = ["orderhooks.testing"]

REFERENCE = Path(__file__).parent / "fixtures"
BC_API = "https://bc.test"
STORE = "abc123"
BC_STORE = f"{BC_API}/stores/{STORE}"


@pytest.fixture
def app_config(app_config):
    """The BigCommerce stand-in's host is not BigCommerce's: the operator's allowance for it."""
    return {**app_config, "ALLOWED_API_BASE_URLS": BC_API}


@pytest.fixture
def receiver():
    """A loopback webhook receiver (tests/webhook_receiver.py), stopped after the test."""
    from tests.webhook_receiver import Receiver
    found = Receiver()
    yield found
    found.stop()


def load_fixture(*parts):
    return json.loads((REFERENCE.joinpath(*parts)).read_text())


@contextmanager
def log_records(logger_name: str):
    """The records one logger handles meanwhile (the orderhooks loggers do not propagate to the
    root, so caplog does not see them)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def api():
    """``responses`` standing in for every channel API; unmatched calls fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class BigCommerce:
    """A BigCommerce store stand-in: hooks API, orders, and signed deliveries to our intake."""

    def __init__(self, app, client, api, make_channel):
        self.app, self.client, self.api = app, client, api
        self.make_channel = make_channel
        self.hooks: dict[int, dict] = {}
        self.next_hook = 1
        self.channel = None
        api.add_callback(responses.GET, f"{BC_STORE}/v3/hooks", callback=self._list_hooks)
        api.add_callback(responses.POST, f"{BC_STORE}/v3/hooks", callback=self._create_hook)

    # hooks API ------------------------------------------------------------------------------
    def _list_hooks(self, request):
        return 200, {}, json.dumps({"data": list(self.hooks.values()),
                                    "meta": {"pagination": {"total_pages": 1}}})

    def _create_hook(self, request):
        body = json.loads(request.body)
        hook = {"id": self.next_hook, "client_id": "c", "store_hash": STORE, "created_at": 1,
                "updated_at": 1, **body}
        self.hooks[self.next_hook] = hook
        self.api.add_callback(responses.PUT, f"{BC_STORE}/v3/hooks/{self.next_hook}",
                              callback=self._update_hook)
        self.api.add_callback(responses.DELETE, f"{BC_STORE}/v3/hooks/{self.next_hook}",
                              callback=self._delete_hook)
        self.next_hook += 1
        return 200, {}, json.dumps({"data": hook, "meta": {}})

    def _update_hook(self, request):
        hook_id = int(request.url.rsplit("/", 1)[1])
        self.hooks[hook_id].update(json.loads(request.body))
        return 200, {}, json.dumps({"data": self.hooks[hook_id], "meta": {}})

    def _delete_hook(self, request):
        hook_id = int(request.url.rsplit("/", 1)[1])
        self.hooks.pop(hook_id, None)
        return 200, {}, json.dumps({"data": {}, "meta": {}})

    # channel --------------------------------------------------------------------------------
    def create(self, cancel=("AWAITING_SHIPMENT",), fulfill=("AWAITING_SHIPMENT",), **creds):
        self.channel = self.make_channel("bigcommerce", {
            "store_hash": STORE, "access_token": "token-1", "api_base_url": BC_API, **creds},
            cancel=cancel, fulfill=fulfill)
        return self.channel

    @property
    def secret(self):
        from core.testing import channel_view
        return channel_view(self.app, self.channel["id"]).webhook_secret

    # orders API -----------------------------------------------------------------------------
    def order(self, order_id, status_id, items_total=2, items_shipped=0, **extra):
        self.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/{order_id}", json={
            "id": order_id, "status_id": status_id, "status": "x", "items_total": items_total,
            "items_shipped": items_shipped, "is_deleted": False, "date_shipped": "", **extra})

    def shipments(self, order_id, shipments):
        url = f"{BC_STORE}/v2/orders/{order_id}/shipments"
        if shipments:
            self.api.upsert(responses.GET, url, json=shipments)
        else:
            self.api.upsert(responses.GET, url, status=204, body=b"")

    # deliveries -----------------------------------------------------------------------------
    def payload(self, order_id=250, new_status=5, scope="store/order/statusUpdated",
                previous=11, created_at=1561479335):
        sample = copy.deepcopy(load_fixture("bigcommerce", "store_order_statusUpdated.json"))
        sample["scope"] = scope
        sample["data"]["id"] = order_id
        sample["data"]["status"] = {"previous_status_id": previous, "new_status_id": new_status}
        sample["created_at"] = created_at
        sample["producer"] = f"stores/{STORE}"
        sample["hash"] = hashlib.sha1(json.dumps(sample, sort_keys=True).encode()).hexdigest()
        return sample

    def send(self, payload=None, *, body=None, secret=None, headers=None, channel_id=None,
             **payload_kw):
        if body is None:
            body = json.dumps(payload if payload is not None else self.payload(**payload_kw))
        hdrs = {"Content-Type": "application/json",
                "X-Orderhooks-Secret": self.secret if secret is None else secret}
        hdrs.update(headers or {})
        if secret is False:
            hdrs.pop("X-Orderhooks-Secret")
        return self.client.post(f"/webhooks/bigcommerce/{channel_id or self.channel['id']}",
                                data=body, headers=hdrs)


@pytest.fixture
def bc(app, client, api, make_channel):
    return BigCommerce(app, client, api, make_channel)
