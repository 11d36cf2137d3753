"""The adapter contract (orderhooks.testing.AdapterContract) run against the BigCommerce one."""
import pytest
import responses

from orderhooks.testing import AdapterContract, json_body
from tests.conftest import BC_API, BC_STORE, STORE, load_fixture


class TestBigCommerceContract(AdapterContract):
    channel_type = "bigcommerce"
    plugin_name = "bigcommerce"
    # BigCommerce authenticates with a secret header the service put on the hook: the body is
    # not signed (unless a Standard Webhooks signature is sent too).
    signs_body = False

    @pytest.fixture
    def channel_credentials(self):
        return {"store_hash": STORE, "access_token": "token-1", "api_base_url": BC_API}

    @pytest.fixture
    def mock_channel_api(self, bc):
        bc.order(250, status_id=5)
        return bc

    @pytest.fixture
    def valid_delivery(self, bc):
        def build(channel):
            return json_body(bc.payload(order_id=250, new_status=5)), {
                "Content-Type": "application/json", "X-Orderhooks-Secret": channel.webhook_secret}
        return build

    @pytest.fixture
    def product_delivery(self, bc, api):
        def build(channel):
            product = load_fixture("bigcommerce", "v3_catalog_product.json")
            api.upsert(responses.GET, f"{BC_STORE}/v3/catalog/products/174", json=product)
            delivery = load_fixture("bigcommerce", "store_product_updated.json")
            delivery["data"]["id"] = 174
            return json_body(delivery), {"Content-Type": "application/json",
                                         "X-Orderhooks-Secret": channel.webhook_secret}
        return build

    @pytest.fixture
    def sign(self):
        return lambda channel, body: {"X-Orderhooks-Secret": channel.webhook_secret}

    @pytest.fixture
    def order_delivery(self, bc):
        from tests.test_orders_from_channel import bc_order

        def build(channel):
            bc_order(bc, order_id=251)
            return json_body(bc.payload(order_id=251, scope="store/order/created")), {
                "Content-Type": "application/json", "X-Orderhooks-Secret": channel.webhook_secret}
        return build
