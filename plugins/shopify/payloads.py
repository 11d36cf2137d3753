"""What each topic's body must look like, and what the intake reads of it.

Only the body is signed: the topic and shop domain are headers anyone who captured a delivery can
change. So a body must look like its topic (:func:`shape_problem`: an order for an order topic, a
fulfillment for a fulfillment topic, a shop for ``app/uninstalled``, a redact request of the right
kind for a privacy topic, a product for a product topic and only ``{id}`` for
``products/delete``) and name the channel's shop wherever it names one.
"""
from __future__ import annotations

from .topics import (APP_UNINSTALLED, CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT,
                     FULFILLMENT_TOPICS, LIFECYCLE_TOPICS, ORDER_TOPICS, PRIVACY_TOPICS,
                     PRODUCT_TOPICS, PRODUCTS_DELETE, REFUNDS_CREATE, SHOP_REDACT)
from .values import _domain, _id, _quote, _shopify_id

#: The top-level fields the intake reads of an order or fulfillment body: enough to tell the
#: kinds of Shopify objects apart and to name the order, not the whole 15 kB document.
SHAPE_FIELDS = ("id", "admin_graphql_api_id", "order_id", "order_number", "updated_at",
                "title")
#: Keys of a customer's privacy request; a shop/redact carries none of them.
CUSTOMER_REQUEST_KEYS = ("customer", "orders_to_redact", "orders_requested", "data_request")
#: Keys a shop object (app/uninstalled) never has: they belong to orders, fulfillments and
#: privacy requests.
NOT_IN_A_SHOP = ("order_id", "order_number", "line_items", "shop_id", "shop_domain", "customer")
#: Topics whose body the intake reads whole: small by nature (a shop, a privacy request, a
#: deleted product's id), and what they must not carry is anywhere in them.
WHOLE_BODY_TOPICS = (*LIFECYCLE_TOPICS, PRODUCTS_DELETE)

_EXPECTED = {
    "order": "an order (an id, its admin_graphql_api_id gid://shopify/Order/<id> or an "
             "order_number, and no order_id)",
    "fulfillment": "a fulfillment (an id, the order_id, admin_graphql_api_id "
                   "gid://shopify/Fulfillment/<id> when present, and no order_number)",
    "refund": "a refund (an id, the order_id, admin_graphql_api_id "
              "gid://shopify/Refund/<id> when present, and no order_number)",
    APP_UNINSTALLED: "a shop object (an id and myshopify_domain)",
    SHOP_REDACT: "{shop_id, shop_domain} and nothing about a customer",
    CUSTOMERS_REDACT: "{shop_id, shop_domain, customer, orders_to_redact}",
    CUSTOMERS_DATA_REQUEST: "{shop_id, shop_domain, customer, orders_requested, data_request}",
    "product": "a product (an id, its admin_graphql_api_id gid://shopify/Product/<id> when "
               "present, a title, and no order_id or order_number)",
    PRODUCTS_DELETE: "only {id}, the deleted product's id",
}


def shape_problem(topic: str, payload: dict, shop: str) -> str | None:
    """Why ``payload`` cannot be a ``topic`` delivery of shop ``shop``, or None when it can.

    Only the body is signed: a captured body re-sent under another topic header (an order as
    ``shop/redact``, a ``shop/update`` as ``app/uninstalled``) must not be acted on as that
    topic. Reads only :data:`SHAPE_FIELDS` of an order or fulfillment (what the intake parses);
    topics orderhooks does not act on are not checked."""
    if topic in ORDER_TOPICS:
        kind, why = "order", _order_problem(payload)
    elif topic in FULFILLMENT_TOPICS:
        kind, why = "fulfillment", _order_part_problem(payload, "Fulfillment")
    elif topic == REFUNDS_CREATE:
        kind, why = "refund", _order_part_problem(payload, "Refund")
    elif topic == APP_UNINSTALLED:
        kind, why = topic, _shop_object_problem(payload, shop)
    elif topic in PRIVACY_TOPICS:
        kind, why = topic, _privacy_problem(topic, payload, shop)
    elif topic in PRODUCT_TOPICS:
        kind, why = "product", _product_problem(payload)
    elif topic == PRODUCTS_DELETE:
        kind, why = topic, _product_deletion_problem(payload)
    else:
        return None
    if why is None:
        return None
    return (f"the body does not look like {topic}: that topic carries {_EXPECTED[kind]}, "
            f"but {why}")


def _object_problem(payload: dict, kind: str) -> str | None:
    """Why ``payload`` is not a Shopify ``kind`` object (``Order``, ``Fulfillment``, ``Shop``)
    by its id and, when present, its ``admin_graphql_api_id`` (which names the object's kind)."""
    object_id = _shopify_id(payload.get("id"), kind)
    if object_id is None:
        return f"its id is not a Shopify {kind.lower()} id"
    gid = payload.get("admin_graphql_api_id")
    if gid is not None and gid != f"gid://shopify/{kind}/{object_id}":
        return f"its admin_graphql_api_id is {_quote(gid)}"
    return None


def _order_problem(order: dict) -> str | None:
    if order.get("order_id") is not None:
        return "it has an order_id, as a fulfillment or a refund does"
    if order.get("admin_graphql_api_id") is None and order.get("order_number") is None:
        return "it has neither an admin_graphql_api_id nor an order_number"
    return _object_problem(order, "Order")


def _order_part_problem(payload: dict, kind: str) -> str | None:
    """Why ``payload`` is not a ``kind`` (``Refund``, ``Fulfillment``): an object of one order,
    which it names by ``order_id``, and not an order itself (no ``order_number``)."""
    if _shopify_id(payload.get("order_id"), "Order") is None:
        return "it names no order (order_id)"
    if payload.get("order_number") is not None:
        return "it has an order_number, as an order does"
    return _object_problem(payload, kind)


def _product_problem(product: dict) -> str | None:
    if product.get("order_id") is not None:
        return "it has an order_id, as a fulfillment or a refund does"
    if product.get("order_number") is not None:
        return "it has an order_number, as an order does"
    if not isinstance(product.get("title"), str):
        return "it has no title"
    return _object_problem(product, "Product")


def _product_deletion_problem(payload: dict) -> str | None:
    """A genuine products/delete is ``{"id": n}``: any other field means a body of another kind
    (a product, whose deletion would be forged from a captured products/update)."""
    extra = sorted(str(key) for key in payload if key != "id")
    if extra:
        return f"it has {', '.join(_quote(k) for k in extra[:5])}"
    if _shopify_id(payload.get("id"), "Product") is None:
        return "its id is not a Shopify product id"
    return None


def _shop_object_problem(payload: dict, shop: str) -> str | None:
    if "myshopify_domain" not in payload:
        return "it has no myshopify_domain"
    extra = [key for key in NOT_IN_A_SHOP if key in payload]
    if extra:
        return f"it has {', '.join(extra)}, which a shop object does not"
    problem = _object_problem(payload, "Shop")
    if problem:
        return problem
    # The shop's own domain must be the channel's; ``domain`` is the shop's primary domain,
    # comparable only when it is its myshopify.com one (a custom domain says nothing).
    for key in ("myshopify_domain", "domain"):
        value = payload.get(key)
        if key == "domain" and not (isinstance(value, str)
                                    and value.lower().endswith(".myshopify.com")):
            continue
        if value is not None and _domain(value) != shop:
            return f"its {key} {_quote(value)} is not this channel's shop {shop}"
    return None


def _privacy_problem(topic: str, payload: dict, shop: str) -> str | None:
    if _shopify_id(payload.get("shop_id"), "Shop") is None:
        return "it has no shop_id"
    if payload.get("shop_domain") is None:
        return "it has no shop_domain"
    if _domain(payload["shop_domain"]) != shop:
        return (f"its shop_domain {_quote(payload['shop_domain'])} is not this channel's shop "
                f"{shop}")
    if topic == SHOP_REDACT:
        extra = [key for key in CUSTOMER_REQUEST_KEYS if key in payload]
        return f"it has {', '.join(extra)}: a customer's request" if extra else None
    customer = payload.get("customer")
    if not isinstance(customer, dict):
        return "it names no customer"
    if topic == CUSTOMERS_REDACT:
        extra = [key for key in ("orders_requested", "data_request") if key in payload]
        if extra:
            return f"it has {', '.join(extra)}: a customers/data_request"
        if "orders_to_redact" in payload and not isinstance(payload["orders_to_redact"], list):
            return "its orders_to_redact is not a list"
    return None


def _order_id(topic: str, payload: dict) -> str | None:
    if topic.startswith("orders/"):
        return _id(payload.get("id"))
    if topic.startswith("fulfillments/") or topic == REFUNDS_CREATE:
        return _id(payload.get("order_id"))
    return None
