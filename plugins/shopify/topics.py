"""Shopify's vocabulary: the delivery headers and the webhook topics orderhooks knows, in the
groups the intake, the shape checks and the translation share."""
from __future__ import annotations

# -- headers (Shopify's names; newer "events" deliveries drop the X- prefix) --------------------


def _names(suffix: str) -> tuple[str, str]:
    return (f"x-shopify-{suffix}", f"shopify-{suffix}")


HMAC_HEADER = _names("hmac-sha256")
TOPIC_HEADER = _names("topic")
SHOP_HEADER = _names("shop-domain")
API_VERSION_HEADER = _names("api-version")
WEBHOOK_ID_HEADER = _names("webhook-id")
EVENT_ID_HEADER = _names("event-id")
TRIGGERED_AT_HEADER = _names("triggered-at")

# -- topics -----------------------------------------------------------------------------------

ORDERS_CREATE = "orders/create"
ORDERS_PAID = "orders/paid"
ORDERS_CANCELLED = "orders/cancelled"
FULFILLMENTS_CREATE = "fulfillments/create"
FULFILLMENTS_UPDATE = "fulfillments/update"
ORDERS_FULFILLED = "orders/fulfilled"
ORDERS_PARTIALLY_FULFILLED = "orders/partially_fulfilled"
APP_UNINSTALLED = "app/uninstalled"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"
PRODUCTS_CREATE = "products/create"
PRODUCTS_UPDATE = "products/update"
PRODUCTS_DELETE = "products/delete"
REFUNDS_CREATE = "refunds/create"

ORDER_TOPICS = (ORDERS_CREATE, ORDERS_PAID, ORDERS_CANCELLED, ORDERS_FULFILLED,
                ORDERS_PARTIALLY_FULFILLED)
FULFILLMENT_TOPICS = (FULFILLMENTS_CREATE, FULFILLMENTS_UPDATE)
PRIVACY_TOPICS = (CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT)
#: Topics whose body is the product.
PRODUCT_TOPICS = (PRODUCTS_CREATE, PRODUCTS_UPDATE)
#: Topics an inactive (e.g. uninstalled) channel still accepts and processes.
LIFECYCLE_TOPICS = (APP_UNINSTALLED, *PRIVACY_TOPICS)
