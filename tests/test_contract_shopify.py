"""The adapter contract (orderhooks.testing.AdapterContract) run against the Shopify adapter."""
import json

import pytest

from orderhooks.testing import AdapterContract
from tests.conftest import load_fixture
from tests.shopify_helpers import SECRET, SHOP, TOKEN, cancelled_order, shopify  # noqa: F401


class TestShopifyContract(AdapterContract):
    channel_type = "shopify"
    plugin_name = "shopify"

    @pytest.fixture
    def channel_credentials(self):
        return {"shop_domain": SHOP, "access_token": TOKEN, "client_secret": SECRET}

    @pytest.fixture
    def mock_channel_api(self, shopify):  # noqa: F811 — the GraphQL Admin API stand-in
        return shopify

    @pytest.fixture
    def sign(self, shopify):  # noqa: F811
        return lambda channel, body: shopify.headers("orders/cancelled", body)

    @pytest.fixture
    def valid_delivery(self, sign):
        def build(channel):
            body = json.dumps(cancelled_order()).encode()
            return body, sign(channel, body)
        return build

    @pytest.fixture
    def order_delivery(self, shopify):  # noqa: F811
        from tests.test_orders_from_channel import new_order

        def build(channel):
            body = json.dumps(new_order()).encode()
            return body, shopify.headers("orders/create", body)
        return build

    @pytest.fixture
    def product_delivery(self, shopify):  # noqa: F811
        def build(channel):
            body = json.dumps(load_fixture("shopify", "products_update.json")).encode()
            return body, shopify.headers("products/update", body)
        return build
