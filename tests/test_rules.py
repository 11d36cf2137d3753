"""The status-rule table of core/rules.py, exhaustively, and core/statuses.check_selection."""
from datetime import datetime, timedelta, timezone

import pytest

from core import rules
from core import statuses as st
from core.intents import Cancel, Fulfill, Shipment

SELECTABLE = list(st.SELECTABLE)
SHIP = (Shipment(tracking_number="1Z", shipment_id="9"),)


def decide(intent, status, cancel=(), fulfill=(), **kw):
    return rules.decide(intent, status, valid_cancellation=list(cancel),
                        valid_fulfillment=list(fulfill), **kw)


def test_every_status_is_covered_by_the_table():
    assert set(st.STATUSES) == set(SELECTABLE) | {st.UNPROCESSED, st.CANCELLED}
    assert st.UNPROCESSED not in SELECTABLE and st.CANCELLED not in SELECTABLE


# -- unknown order --------------------------------------------------------------------------

@pytest.mark.parametrize("intent", [Cancel("1"), Fulfill("1", shipments=SHIP),
                                    Fulfill("1", shipments=SHIP, complete=False)])
def test_unknown_order_is_deferred(intent):
    decision = decide(intent, None, SELECTABLE, SELECTABLE)
    assert decision.outcome == rules.DEFERRED
    assert "not imported" in decision.reason
    assert decision.new_status is None and not decision.record_shipments


# -- Cancel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status", SELECTABLE)
def test_cancel_in_selected_status_is_applied(status):
    decision = decide(Cancel("1"), status, cancel=[status])
    assert decision.outcome == rules.APPLIED
    assert decision.new_status == st.CANCELLED
    assert not decision.record_shipments
    assert status in decision.reason


@pytest.mark.parametrize("status", SELECTABLE)
def test_cancel_in_unselected_status_is_ignored_with_reason(status):
    others = [s for s in SELECTABLE if s != status]
    decision = decide(Cancel("1"), status, cancel=others, fulfill=[status])
    assert decision.outcome == rules.IGNORED
    assert decision.new_status is None
    assert decision.reason.startswith(f"order is {status}, not a valid cancellation status")


def test_cancel_reason_when_nothing_is_selected():
    decision = decide(Cancel("1"), st.ON_HOLD, cancel=[], fulfill=[st.ON_HOLD])
    assert decision.outcome == rules.IGNORED
    assert decision.reason == ("order is ON_HOLD, not a valid cancellation status "
                               "(no valid cancellation statuses are selected)")


def test_cancel_reason_names_the_valid_statuses():
    decision = decide(Cancel("1"), st.ON_HOLD, cancel=[st.AWAITING_SHIPMENT, st.AWAITING_PAYMENT])
    assert decision.reason == ("order is ON_HOLD, not a valid cancellation status "
                               "(valid: AWAITING_SHIPMENT, AWAITING_PAYMENT)")


@pytest.mark.parametrize("selected", [True, False])
def test_cancel_of_unprocessed_order_is_deferred(selected):
    decision = decide(Cancel("1"), st.UNPROCESSED, cancel=SELECTABLE if selected else [])
    assert decision.outcome == rules.DEFERRED
    assert "UNPROCESSED" in decision.reason and decision.new_status is None


@pytest.mark.parametrize("selected", [True, False])
def test_cancel_of_cancelled_order_is_ignored(selected):
    decision = decide(Cancel("1"), st.CANCELLED, cancel=SELECTABLE if selected else [])
    assert decision.outcome == rules.IGNORED
    assert "already CANCELLED" in decision.reason and decision.new_status is None


# -- Fulfill (complete) ---------------------------------------------------------------------

@pytest.mark.parametrize("status", [s for s in SELECTABLE if s != st.SHIPPED])
def test_fulfill_in_selected_status_ships_and_records(status):
    decision = decide(Fulfill("1", shipments=SHIP), status, fulfill=[status], new_shipments=True)
    assert decision.outcome == rules.APPLIED
    assert decision.new_status == st.SHIPPED and decision.record_shipments


@pytest.mark.parametrize("status", [s for s in SELECTABLE if s != st.SHIPPED])
def test_fulfill_without_shipments_in_selected_status_still_ships(status):
    decision = decide(Fulfill("1"), status, fulfill=[status], new_shipments=False)
    assert decision.outcome == rules.APPLIED and decision.new_status == st.SHIPPED


@pytest.mark.parametrize("status", [s for s in SELECTABLE if s != st.SHIPPED])
def test_fulfill_in_unselected_status_is_ignored(status):
    decision = decide(Fulfill("1", shipments=SHIP), status, cancel=[status],
                      fulfill=[s for s in SELECTABLE if s != status], new_shipments=True)
    assert decision.outcome == rules.IGNORED
    assert decision.new_status is None and not decision.record_shipments
    assert decision.reason.startswith(f"order is {status}, not a valid fulfillment status")


@pytest.mark.parametrize("selected", [True, False])
def test_fulfill_of_unprocessed_order_is_deferred(selected):
    decision = decide(Fulfill("1", shipments=SHIP), st.UNPROCESSED,
                      fulfill=SELECTABLE if selected else [], new_shipments=True)
    assert decision.outcome == rules.DEFERRED and not decision.record_shipments


@pytest.mark.parametrize("selected", [True, False])
def test_fulfill_of_cancelled_order_is_ignored(selected):
    decision = decide(Fulfill("1", shipments=SHIP), st.CANCELLED,
                      fulfill=SELECTABLE if selected else [], new_shipments=True)
    assert decision.outcome == rules.IGNORED
    assert "CANCELLED" in decision.reason and decision.new_status is None
    assert not decision.record_shipments


@pytest.mark.parametrize("selected", [True, False])
def test_fulfill_of_shipped_order_with_same_shipments_is_ignored(selected):
    decision = decide(Fulfill("1", shipments=SHIP), st.SHIPPED,
                      fulfill=SELECTABLE if selected else [], new_shipments=False)
    assert decision.outcome == rules.IGNORED
    assert "already SHIPPED" in decision.reason and not decision.record_shipments


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("selected", [True, False])
def test_new_shipments_on_shipped_order_are_recorded_without_status_change(selected, complete):
    decision = decide(Fulfill("1", shipments=SHIP, complete=complete), st.SHIPPED,
                      fulfill=SELECTABLE if selected else [], new_shipments=True)
    assert decision.outcome == rules.APPLIED
    assert decision.record_shipments and decision.new_status is None
    assert "new shipments" in decision.reason


@pytest.mark.parametrize("status", SELECTABLE)
def test_cancel_of_shipped_or_other_order_follows_selection_only(status):
    """SHIPPED is selectable for cancellations like any other status."""
    assert decide(Cancel("1"), status, cancel=[status]).new_status == st.CANCELLED
    assert decide(Cancel("1"), status, cancel=[]).outcome == rules.IGNORED


# -- partial Fulfill ------------------------------------------------------------------------

@pytest.mark.parametrize("status", [s for s in SELECTABLE if s != st.SHIPPED])
def test_partial_fulfil_records_shipments_and_keeps_status(status):
    decision = decide(Fulfill("1", shipments=SHIP, complete=False), status, fulfill=[status],
                      new_shipments=True)
    assert decision.outcome == rules.APPLIED
    assert decision.record_shipments and decision.new_status is None
    assert "partial" in decision.reason


@pytest.mark.parametrize("status", [s for s in SELECTABLE if s != st.SHIPPED])
def test_partial_fulfil_with_nothing_new_changes_nothing(status):
    """Re-applying a partial shipment already recorded is a no-op, reported as ignored."""
    decision = decide(Fulfill("1", shipments=SHIP, complete=False), status, fulfill=[status],
                      new_shipments=False)
    assert decision.outcome == rules.IGNORED
    assert not decision.record_shipments and decision.new_status is None
    assert "already recorded" in decision.reason


def test_partial_fulfil_in_unselected_status_is_ignored():
    decision = decide(Fulfill("1", shipments=SHIP, complete=False), st.ON_HOLD,
                      fulfill=[st.AWAITING_SHIPMENT], new_shipments=True)
    assert decision.outcome == rules.IGNORED and not decision.record_shipments


def test_partial_fulfil_of_unprocessed_order_is_deferred():
    decision = decide(Fulfill("1", shipments=SHIP, complete=False), st.UNPROCESSED,
                      fulfill=SELECTABLE, new_shipments=True)
    assert decision.outcome == rules.DEFERRED


# -- stale events ---------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 12, 0, 0)


@pytest.mark.parametrize("intent_kind", ["cancel", "fulfill"])
def test_event_older_than_last_event_is_ignored_as_stale(intent_kind):
    older = T0 - timedelta(seconds=1)
    intent = (Cancel("1", occurred_at=older) if intent_kind == "cancel"
              else Fulfill("1", shipments=SHIP, occurred_at=older))
    decision = decide(intent, st.AWAITING_SHIPMENT, SELECTABLE, SELECTABLE,
                      last_event_at=T0, new_shipments=True)
    assert decision.outcome == rules.IGNORED
    assert decision.reason.startswith("stale")
    assert decision.new_status is None and not decision.record_shipments


@pytest.mark.parametrize("offset", [0, 1, 3600])
def test_event_at_or_after_last_event_is_applied(offset):
    decision = decide(Cancel("1", occurred_at=T0 + timedelta(seconds=offset)),
                      st.AWAITING_SHIPMENT, cancel=SELECTABLE, last_event_at=T0)
    assert decision.outcome == rules.APPLIED and decision.new_status == st.CANCELLED


def test_stale_comparison_mixes_aware_and_naive_times_as_utc():
    # 13:59:59+02:00 is 11:59:59 UTC: older than T0 (12:00 UTC, naive)
    aware = datetime(2024, 5, 1, 13, 59, 59, tzinfo=timezone(timedelta(hours=2)))
    assert decide(Cancel("1", occurred_at=aware), st.AWAITING_SHIPMENT, cancel=SELECTABLE,
                  last_event_at=T0).outcome == rules.IGNORED
    later = datetime(2024, 5, 1, 14, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert decide(Cancel("1", occurred_at=later), st.AWAITING_SHIPMENT, cancel=SELECTABLE,
                  last_event_at=T0).outcome == rules.APPLIED
    aware_last = T0.replace(tzinfo=timezone.utc)
    assert decide(Cancel("1", occurred_at=T0 - timedelta(seconds=5)), st.AWAITING_SHIPMENT,
                  cancel=SELECTABLE, last_event_at=aware_last).outcome == rules.IGNORED


@pytest.mark.parametrize("occurred_at,last_event_at", [(None, T0), (T0, None), (None, None)])
def test_missing_times_never_make_an_event_stale(occurred_at, last_event_at):
    decision = decide(Cancel("1", occurred_at=occurred_at), st.AWAITING_SHIPMENT,
                      cancel=SELECTABLE, last_event_at=last_event_at)
    assert decision.outcome == rules.APPLIED


def test_stale_event_for_unprocessed_order_is_not_held():
    decision = decide(Cancel("1", occurred_at=T0 - timedelta(days=1)), st.UNPROCESSED,
                      cancel=SELECTABLE, last_event_at=T0)
    assert decision.outcome == rules.IGNORED and decision.reason.startswith("stale")


def test_already_cancelled_wins_over_stale():
    decision = decide(Cancel("1", occurred_at=T0 - timedelta(days=1)), st.CANCELLED,
                      cancel=SELECTABLE, last_event_at=T0)
    assert decision.outcome == rules.IGNORED and "already CANCELLED" in decision.reason


# -- check_selection ------------------------------------------------------------------------

def test_check_selection_canonical_order_and_dedupe():
    assert st.check_selection(["ON_HOLD", "AWAITING_SHIPMENT", "ON_HOLD"], "cancellation") == \
        ["AWAITING_SHIPMENT", "ON_HOLD"]
    assert st.check_selection(None, "cancellation") == []
    assert st.check_selection([], "fulfillment") == []
    assert st.check_selection(SELECTABLE[::-1], "fulfillment") == SELECTABLE


@pytest.mark.parametrize("what", ["cancellation", "fulfillment"])
@pytest.mark.parametrize("bad", ["UNPROCESSED", "CANCELLED", "FOO", "awaiting_shipment", ""])
def test_check_selection_refuses_and_names_the_value(bad, what):
    with pytest.raises(ValueError) as info:
        st.check_selection(["AWAITING_SHIPMENT", bad], what)
    message = str(info.value)
    assert (repr(bad) if bad not in st.STATUSES else bad) in message
    assert what in message


def test_check_selection_explains_why_unprocessed_and_cancelled_are_refused():
    with pytest.raises(ValueError, match="unprocessed orders are held"):
        st.check_selection(["UNPROCESSED"], "cancellation")
    with pytest.raises(ValueError, match="a cancelled order cannot change"):
        st.check_selection(["CANCELLED"], "fulfillment")
    with pytest.raises(ValueError, match="'FOO' is not an order status"):
        st.check_selection(["FOO"], "fulfillment")


# -- through the app ------------------------------------------------------------------------

def test_partial_shipment_delivered_twice_is_recorded_once(bc, admin, make_order, worker):
    """A second Partially Shipped delivery with the same shipments changes nothing and says so."""
    channel = bc.create()
    order = make_order(channel["id"], 253)
    bc.order(253, status_id=3, items_total=3, items_shipped=1)
    bc.shipments(253, [{"id": 1, "tracking_number": "A1", "items": []}])
    first = bc.send(order_id=253, new_status=3, created_at=1).get_json()["delivery_id"]
    second = bc.send(order_id=253, new_status=3, created_at=2).get_json()["delivery_id"]
    worker.run_until_idle()
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert [s["tracking_number"] for s in detail["shipments"]] == ["A1"]
    assert [h["event"] for h in detail["history"]] == ["created", "shipments_recorded", "ignored"]
    assert admin.get(f"/deliveries/{first}")["outcome"] == "applied"
    repeat = admin.get(f"/deliveries/{second}")
    assert repeat["outcome"] == "ignored" and "already recorded" in repeat["reason"]
    # a new parcel is recorded again
    bc.shipments(253, [{"id": 1, "tracking_number": "A1", "items": []},
                       {"id": 2, "tracking_number": "A2", "items": []}])
    third = bc.send(order_id=253, new_status=3, created_at=3).get_json()["delivery_id"]
    worker.run_until_idle()
    assert admin.get(f"/deliveries/{third}")["outcome"] == "applied"
    assert [s["tracking_number"] for s in admin.get(f"/orders/{order['id']}")["shipments"]] == \
        ["A1", "A2"]
