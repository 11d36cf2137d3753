"""The admin API's edges: integers, moments and ids no column (or Python) can hold answer 422
naming the field, or 404 for a path, never 500; a replay window is replayed in bounded pages."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_worker import row

EDGE = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _post_raw(admin, path, raw: str, method="POST"):
    return admin.request(method, path, data=raw.encode(), content_type="application/json")


def _error(response, status=422) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    body = response.get_json()
    assert body["error"] and body["message"]
    return body


def test_integers_beyond_64_bits_anywhere_in_a_body_are_422_with_the_field(admin, bc):
    channel = bc.create()
    for number, field in (("1" * 10_000, "customer.n"), (str(2**63), "customer.n"),
                          ("-" + "9" * 5000, "customer.n")):
        raw = (f'{{"channel_id": {channel["id"]}, "channel_order_id": "x", '
               f'"customer": {{"n": {number}}}}}')
        body = _error(_post_raw(admin, "/orders", raw))
        assert field in body["message"] and field in body["details"]["json"]
    nested = f'{{"channel_id": {channel["id"]}, "channel_order_id": "x", "customer": ' \
             f'{{"ids": [1, {"7" * 4400}]}}}}'
    assert "customer.ids.1" in _error(_post_raw(admin, "/orders", nested))["message"]
    for field in ("channel_id", "after_id", "limit"):
        window = {"channel_id": channel["id"], "since": "2026-01-01T00:00:00Z",
                  "until": "2026-01-02T00:00:00Z", field: "HUGE"}
        raw = json.dumps(window).replace('"HUGE"', "9" * 10_000)
        assert field in _error(_post_raw(admin, "/deliveries/replay", raw))["message"]
    # Within 64 bits the value is kept as sent.
    raw = (f'{{"channel_id": {channel["id"]}, "channel_order_id": "y", '
           f'"customer": {{"n": {2**63 - 1}, "m": {-2**63}}}}}')
    created = _post_raw(admin, "/orders", raw)
    assert created.status_code == 201
    assert created.get_json()["customer"] == {"n": 2**63 - 1, "m": -2**63}


@pytest.mark.parametrize("field, moment", [
    ("since", "0001-01-01T00:00:00+14:00"), ("until", "9999-12-31T23:59:59-14:00"),
    ("since", "0000-12-31T00:00:00Z"), ("until", "10000-01-01T00:00:00Z"),
    ("since", "2026-02-30T00:00:00Z"), ("since", "not a date"), ("until", 10**30)])
def test_moments_without_a_utc_form_are_422_with_the_field(admin, bc, field, moment):
    channel = bc.create()
    window = {"channel_id": channel["id"], "since": "2026-01-01T00:00:00Z",
              "until": "2026-01-02T00:00:00Z", field: moment}
    body = _error(admin.request("POST", "/deliveries/replay", json=window))
    assert field in body["details"]["json"], body


def test_the_earliest_and_latest_utc_moments_are_accepted(admin, bc):
    channel = bc.create()
    window = {"channel_id": channel["id"], "since": "0001-01-01T00:00:00+00:00",
              "until": "9999-12-31T23:59:59+00:00"}
    assert admin.post("/deliveries/replay", window, expect=202)["replayed"] == 0


@pytest.mark.parametrize("path", ["/orders/", "/deliveries/", "/channels/",
                                  "/channels/{}/history", "/deliveries/{}/replay"])
def test_ids_in_paths_of_thousands_of_digits_are_404(admin, path):
    huge = "9" * 5000
    url = path.format(huge) if "{}" in path else path + huge
    method = "POST" if url.endswith("/replay") else "GET"
    _error(admin.request(method, url), 404)
    _error(admin.request(method, url.replace(huge, "9" * 19)), 404)


def test_integers_in_query_strings_are_422_with_the_field(admin):
    for query in ("channel_id", "limit", "offset"):
        body = _error(admin.request("GET", f"/orders?{query}={'9' * 5000}"))
        assert query in body["message"]


# -- the whole class, by property -----------------------------------------------------------------

#: Stands for a 10,000-digit number (written into the JSON text as such).
HUGE = "<a 10,000-digit number>"
INTEGERS = st.one_of(st.integers(), st.integers(min_value=2**62, max_value=2**70),
                     st.integers(max_value=-2**62, min_value=-2**70),
                     st.sampled_from([2**63, 2**63 - 1, -2**63, -2**63 - 1, HUGE]))
MOMENTS = st.one_of(
    st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                                            timezone(timedelta(hours=-14)), None])).map(
        lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "",
                     "2026-13-01T00:00:00Z", "0001-01-01", "T"]), st.integers().map(str))
JSON_VALUE = st.recursive(st.none() | st.booleans() | INTEGERS | st.text(max_size=10)
                          | st.floats(allow_nan=False, allow_infinity=False),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                          max_leaves=8)


def _dumps(value) -> bytes:
    text = json.dumps(value).replace(json.dumps(HUGE), "9" * 10_000)
    return text.encode("utf-8", "surrogatepass")


def test_no_integer_moment_or_json_value_gives_a_server_error(admin, bc, make_order):
    channel = bc.create()
    order = make_order(channel["id"], 1)
    seen = set()

    @EDGE
    @given(target=st.sampled_from(["order", "replay", "channel", "patch-order"]),
           channel_id=INTEGERS, order_id=st.one_of(st.text(max_size=140), INTEGERS),
           customer=JSON_VALUE, since=MOMENTS, until=MOMENTS, after_id=INTEGERS,
           limit=INTEGERS, credentials=JSON_VALUE)
    def check(target, channel_id, order_id, customer, since, until, after_id, limit,
              credentials):
        method, path, body = {
            "order": ("POST", "/orders", {"channel_id": channel_id,
                                          "channel_order_id": order_id, "customer": customer}),
            "replay": ("POST", "/deliveries/replay", {
                "channel_id": channel_id, "since": since, "until": until,
                "after_id": after_id, "limit": limit}),
            "channel": ("PATCH", f"/channels/{channel['id']}", {"credentials": credentials}),
            "patch-order": ("PATCH", f"/orders/{order['id']}", {"status": customer}),
        }[target]
        response = admin.request(method, path, data=_dumps(body),
                                 content_type="application/json")
        assert response.status_code < 500, (response.status_code, response.get_data()[:300])
        if response.status_code >= 400:
            answer = response.get_json()
            assert answer["error"] and answer["message"]
        seen.add(response.status_code)

    check()
    assert 422 in seen


# -- replay in pages ---------------------------------------------------------------------------

class TestReplayPages:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "REPLAY_MAX_DELIVERIES": 3}

    def test_a_window_is_replayed_at_most_n_at_a_time_and_next_continues_it(
            self, app, admin, bc, make_order, worker):
        channel = bc.create()
        ids = []
        for order_id in range(300, 307):
            make_order(channel["id"], order_id)
            bc.order(order_id, status_id=11)  # awaiting fulfilment in BigCommerce: ignored
            ids.append(bc.send(order_id=order_id).get_json()["delivery_id"])
        worker.run_until_idle()
        now = datetime.now(timezone.utc)
        window = {"channel_id": channel["id"], "outcome": ["ignored"],
                  "since": (now - timedelta(minutes=5)).isoformat(),
                  "until": (now + timedelta(minutes=5)).isoformat()}

        pages = []
        answer = admin.post("/deliveries/replay", window, expect=202)
        while True:
            pages.append(answer["delivery_ids"])
            assert answer["replayed"] == len(answer["delivery_ids"]) <= 3
            assert answer["limit"] == 3
            if answer["next"] is None:
                break
            assert answer["next"]["after_id"] == answer["delivery_ids"][-1]
            answer = admin.post("/deliveries/replay", answer["next"], expect=202)
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]
        assert all(row(app, i).state == "pending" for i in ids)

        # A smaller page on request; never more than the configured cap.
        worker.run_until_idle()
        assert admin.post("/deliveries/replay", {**window, "limit": 2},
                          expect=202)["delivery_ids"] == ids[:2]
        assert admin.post("/deliveries/replay", {**window, "limit": 50},
                          expect=202)["delivery_ids"] == ids[2:5]
