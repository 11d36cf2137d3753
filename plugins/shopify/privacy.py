"""The privacy topics' bodies as intents: customers/redact and shop/redact become
RedactPersonalData; customers/data_request is recorded and answered from what is stored."""
from __future__ import annotations

from orderhooks import Channel, Ignore, RedactPersonalData

from .topics import CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT
from .values import _id, _list, _text


def _privacy_intent(topic: str, payload: dict, channel: Channel):
    """For a payload :func:`shape_problem` accepted (its shop is the channel's)."""
    customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
    if topic == CUSTOMERS_DATA_REQUEST:
        requested = ", ".join(o for o in map(_id, _list(payload.get("orders_requested")))
                              if o) or "none"
        return Ignore(f"customers/data_request for customer {_id(customer.get('id')) or '?'} "
                      f"recorded (this delivery; orders requested: {requested}); orderhooks "
                      "keeps only the deliveries and orders it was sent — answer the merchant "
                      "from them")
    if topic == CUSTOMERS_REDACT:
        customer_id = _id(customer.get("id"))
        email = _text(customer.get("email"))
        orders = tuple(o for o in map(_id, _list(payload.get("orders_to_redact"))) if o)
        if not (customer_id or email or orders):
            return Ignore("customers/redact names no customer and no order; nothing to redact")
        return RedactPersonalData(customer_ids=(customer_id,) if customer_id else (),
                                  emails=(email,) if email else (), channel_order_ids=orders)
    return RedactPersonalData(everything=True)
