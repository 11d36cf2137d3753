"""The Shopify adapter against the adapter contract of ``core.testing``."""
import pytest

from core.testing import AdapterContract
from tests.shopify_helpers import SECRET, SHOP, TOKEN, cancelled_order, sign as hmac_sign
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)


class TestShopifyContract(AdapterContract):
    channel_type = "shopify"
    plugin_name = "shopify"

    @pytest.fixture
    def channel_credentials(self):
        return {"shop_domain": SHOP, "access_token": TOKEN, "client_secret": SECRET}

    @pytest.fixture
    def mock_channel_api(self, shopify):
        return shopify

    @pytest.fixture
    def sign(self):
        def headers(channel, body):
            return {"X-Shopify-Topic": "orders/cancelled",
                    "X-Shopify-Hmac-Sha256": hmac_sign(body),
                    "X-Shopify-Webhook-Id": "contract-signed"}
        return headers

    @pytest.fixture
    def valid_delivery(self):
        import json
        body = json.dumps(cancelled_order()).encode()

        def build(channel):
            return body, {"Content-Type": "application/json",
                          "X-Shopify-Topic": "orders/cancelled",
                          "X-Shopify-Hmac-Sha256": hmac_sign(body),
                          "X-Shopify-Shop-Domain": SHOP,
                          "X-Shopify-Webhook-Id": "contract-1",
                          "X-Shopify-Triggered-At": "2026-03-01T10:00:00Z"}
        return build
