"""Shopify webhook subscriptions through the GraphQL Admin API (``responses`` standing in), the
channel's credentials, and throttling."""
import json

import pytest
import responses

from core.errors import RetryLater, SubscriptionError
from plugins.shopify.plugin import ShopifyAdapter
from tests.shopify_helpers import (ALL_TOPICS, API_VERSION, CANCEL_TOPICS, FULFILMENT_TOPICS,
                                   SHOP, TOKEN, ShopifyStandin)
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)


def report(admin, channel):
    return admin.get(f"/channels/{channel['id']}/subscriptions")


def statuses(admin, channel):
    return {s["topic"]: s["status"] for s in report(admin, channel)["subscriptions"]}


# -- created, per the channel's settings ------------------------------------------------------


def test_channel_with_both_status_lists_subscribes_to_every_topic(shopify, admin):
    channel = shopify.create()
    assert shopify.topics() == ALL_TOPICS
    assert {n["uri"] for n in shopify.subscriptions.values()} == {channel["webhook_url"]}
    assert channel["webhook_url"].startswith("https://")
    assert {s["topic"]: s["status"] for s in channel["subscriptions"]} == {
        t: "active" for t in ALL_TOPICS}
    remote_ids = {s["remote_id"] for s in channel["subscriptions"]}
    assert remote_ids == set(shopify.subscriptions)
    # the GraphQL calls: default base URL and version, the access token, `uri` (not callbackUrl)
    call = shopify.graphql_calls()[-1]
    assert call.request.url == f"https://{SHOP}/admin/api/{API_VERSION}/graphql.json"
    assert call.request.headers["X-Shopify-Access-Token"] == TOKEN
    creates = [json.loads(c.request.body) for c in shopify.graphql_calls()
               if "webhookSubscriptionCreate" in json.loads(c.request.body)["query"]]
    assert len(creates) == 6
    assert creates[0]["variables"]["webhookSubscription"] == {
        "uri": channel["webhook_url"], "format": "JSON"}
    events = report(admin, channel)["events"]
    assert {e["action"] for e in events} == {"created"}


def test_fulfilment_only_channel(shopify):
    shopify.create(cancel=(), fulfill=["AWAITING_SHIPMENT"])
    assert shopify.topics() == FULFILMENT_TOPICS


def test_cancellation_only_channel(shopify):
    shopify.create(cancel=["AWAITING_SHIPMENT"], fulfill=())
    assert shopify.topics() == CANCEL_TOPICS


def test_channel_without_statuses_makes_no_call(shopify, api):
    shopify.create(cancel=(), fulfill=())
    assert shopify.graphql_calls() == []
    assert shopify.subscriptions == {}


def test_second_check_changes_nothing(shopify, admin):
    channel = shopify.create()
    before = dict(shopify.subscriptions)
    result = shopify.check()
    assert shopify.subscriptions == before
    assert {s["last_action"] for s in result["subscriptions"]} == {"ok"}
    assert statuses(admin, channel) == {t: "active" for t in ALL_TOPICS}
    assert set(shopify.operations[-1:]) == {"webhookSubscriptions"}


def test_custom_api_base_url_and_version(app, client, api, make_channel, admin, monkeypatch):
    from core.http import APIBaseURLs
    # The operator's allowance (ORDERHOOKS_ALLOWED_API_BASE_URLS) for a stand-in on http.
    monkeypatch.setattr(app.extensions["orderhooks.channel_types"].get("shopify"),
                        "allowed_api_base_urls", APIBaseURLs("http://127.0.0.1:8001"))
    standin = ShopifyStandin(app, client, api, make_channel, admin,
                             base="http://127.0.0.1:8001", version="2025-10")
    channel = standin.create(api_base_url="http://127.0.0.1:8001/", api_version="2025-10")
    assert standin.topics(channel["webhook_url"]) == ALL_TOPICS


# -- re-created, repaired, removed ------------------------------------------------------------


def test_periodic_check_recreates_a_subscription_shopify_deleted(shopify, admin, worker):
    channel = shopify.create()
    shopify.drop("ORDERS_CANCELLED")  # Shopify deletes it after failed deliveries
    worker.housekeeping(force=True)
    assert shopify.topics() == ALL_TOPICS
    events = report(admin, channel)["events"]
    recreated = [e for e in events if e["action"] == "recreated"]
    assert [e["topic"] for e in recreated] == ["ORDERS_CANCELLED"]
    assert "disappeared" in recreated[0]["message"]
    rows = {s["topic"]: s for s in report(admin, channel)["subscriptions"]}
    assert rows["ORDERS_CANCELLED"]["remote_id"] in shopify.subscriptions
    assert rows["ORDERS_CANCELLED"]["last_action"] == "recreated"


def test_manual_check_recreates_everything_after_shopify_dropped_all(shopify, admin):
    channel = shopify.create()
    shopify.subscriptions.clear()
    shopify.check()
    assert shopify.topics(channel["webhook_url"]) == ALL_TOPICS
    assert statuses(admin, channel) == {t: "active" for t in ALL_TOPICS}


def test_emptied_statuses_remove_every_subscription(shopify, admin):
    channel = shopify.create()
    admin.patch(f"/channels/{channel['id']}", {"valid_cancellation_statuses": [],
                                               "valid_fulfillment_statuses": []})
    assert shopify.subscriptions == {}
    assert statuses(admin, channel) == {}
    deleted = [e for e in report(admin, channel)["events"] if e["action"] == "deleted"]
    assert len(deleted) == 6


def test_dropping_cancellations_removes_only_that_topic(shopify, admin):
    channel = shopify.create()
    admin.patch(f"/channels/{channel['id']}", {"valid_cancellation_statuses": []})
    assert shopify.topics() == FULFILMENT_TOPICS
    assert set(statuses(admin, channel)) == FULFILMENT_TOPICS
    admin.patch(f"/channels/{channel['id']}",
                {"valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
    assert shopify.topics() == ALL_TOPICS


def test_deactivated_channel_removes_every_subscription(shopify, admin):
    channel = shopify.create()
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    assert shopify.subscriptions == {}
    assert statuses(admin, channel) == {}
    admin.patch(f"/channels/{channel['id']}", {"active": True})
    assert shopify.topics() == ALL_TOPICS


def test_duplicates_are_removed_and_other_destinations_left_alone(shopify, admin):
    channel = shopify.create()
    extra = shopify.add_subscription("ORDERS_CANCELLED", channel["webhook_url"])
    foreign = shopify.add_subscription("ORDERS_CANCELLED", "https://elsewhere.example/hook")
    shopify.check()
    assert extra["id"] not in shopify.subscriptions
    assert foreign["id"] in shopify.subscriptions
    assert shopify.topics(channel["webhook_url"]) == ALL_TOPICS


def test_listing_is_paginated(shopify, admin):
    channel = shopify.create()
    shopify.page_size = 2
    for n in range(3):
        shopify.add_subscription("ORDERS_CREATE", f"https://elsewhere.example/{n}")
    shopify.drop("APP_UNINSTALLED")
    before = len(shopify.graphql_calls())
    shopify.check()
    lists = [json.loads(c.request.body)["variables"] for c in shopify.graphql_calls()[before:]
             if "webhookSubscriptions(" in json.loads(c.request.body)["query"]]
    # 5 of ours + 3 elsewhere = 8 subscriptions, in pages of 2
    assert [v["after"] for v in lists] == [None, "2", "4", "6"]
    # nothing duplicated although the list came in pages; only the missing one created
    assert sorted(n["topic"] for n in shopify.subscriptions.values()
                  if n["uri"] == channel["webhook_url"]) == sorted(ALL_TOPICS)
    assert [e["topic"] for e in report(admin, channel)["events"]
            if e["action"] == "recreated"] == ["APP_UNINSTALLED"]


def test_deleting_a_subscription_already_gone_is_fine(shopify, app):
    """Shopify answers a userError ("does not exist") for a subscription already deleted: the
    adapter asked, and counts the subscription gone rather than raising SubscriptionError."""
    channel = shopify.create()
    from core.adapters import RemoteSubscription
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    before = dict(shopify.subscriptions)
    shopify.operations.clear()
    gone = "gid://shopify/WebhookSubscription/999999"
    assert gone not in shopify.subscriptions
    assert adapter.delete_subscription(view, RemoteSubscription(
        gone, "ORDERS_CANCELLED", channel["webhook_url"])) is None
    assert shopify.operations == ["webhookSubscriptionDelete"]
    sent = json.loads(shopify.graphql_calls()[-1].request.body)
    assert sent["variables"]["id"] == gone
    assert shopify.subscriptions == before  # the others are untouched


def test_activate_recreates(shopify, app):
    channel = shopify.create()
    from core.adapters import RemoteSubscription
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    old_id = next(i for i, n in shopify.subscriptions.items() if n["topic"] == "ORDERS_FULFILLED")
    remote = adapter.activate_subscription(view, RemoteSubscription(
        old_id, "ORDERS_FULFILLED", channel["webhook_url"], active=False))
    assert remote.remote_id != old_id and remote.remote_id in shopify.subscriptions
    assert remote.topic == "ORDERS_FULFILLED" and remote.destination == channel["webhook_url"]
    assert shopify.topics() == ALL_TOPICS


# -- errors -------------------------------------------------------------------------------------


def test_user_errors_mark_the_subscription_failed(shopify, admin):
    shopify.create_errors["ORDERS_CANCELLED"] = [
        {"field": ["webhookSubscription", "uri"], "message": "Address for this topic has "
                                                             "already been taken"}]
    channel = shopify.create()
    rows = {s["topic"]: s for s in report(admin, channel)["subscriptions"]}
    assert rows["ORDERS_CANCELLED"]["status"] == "failed"
    # Our reason, not Shopify's text (that goes to the log only).
    assert "Shopify refused it" in rows["ORDERS_CANCELLED"]["last_error"]
    assert "already been taken" not in json.dumps(report(admin, channel))
    assert all(rows[t]["status"] == "active" for t in ALL_TOPICS - {"ORDERS_CANCELLED"})
    # the next check repairs it once Shopify accepts
    del shopify.create_errors["ORDERS_CANCELLED"]
    shopify.check()
    assert statuses(admin, channel)["ORDERS_CANCELLED"] == "active"


def test_top_level_graphql_errors_are_reported(shopify, admin):
    shopify.queued.append((200, {}, {"errors": [{"message": "Access denied for "
                                                            "webhookSubscriptions field.",
                                                 "extensions": {"code": "ACCESS_DENIED"}}]}))
    channel = shopify.create()
    assert set(statuses(admin, channel).values()) == {"failed"}
    failed = report(admin, channel)["events"][0]
    assert failed["action"] == "failed" and "GraphQL errors" in failed["message"]
    assert "Access denied" not in json.dumps(report(admin, channel))
    shopify.check()
    assert set(statuses(admin, channel).values()) == {"active"}


def test_a_dead_token_is_reported(shopify, admin):
    shopify.token = "something-else"
    channel = shopify.create()
    rows = report(admin, channel)["subscriptions"]
    assert rows and all(r["status"] == "failed" and "HTTP 401" in r["last_error"] for r in rows)


def test_server_errors_are_reported(shopify, admin):
    shopify.queued.append((502, {}, {"errors": "bad gateway"}))
    channel = shopify.create()
    assert set(statuses(admin, channel).values()) == {"failed"}
    assert "502" in report(admin, channel)["subscriptions"][0]["last_error"]


# -- throttling ---------------------------------------------------------------------------------


def test_429_with_short_retry_after_is_waited_out(shopify, admin):
    shopify.queued.append((429, {"Retry-After": "1.0"}, {"errors": "Throttled"}))
    channel = shopify.create()
    assert shopify.topics() == ALL_TOPICS
    assert shopify.slept and 0.5 < shopify.slept[0] <= 1.0
    assert set(statuses(admin, channel).values()) == {"active"}


def test_429_without_retry_after_waits_a_default(shopify, admin):
    shopify.queued.append((429, {}, {"errors": "Throttled"}))
    shopify.create()
    assert shopify.topics() == ALL_TOPICS
    assert shopify.slept and shopify.slept[0] <= 2.0


def test_429_with_long_retry_after_is_left_for_later(shopify, admin):
    shopify.queued.append((429, {"Retry-After": "120"}, {"errors": "Throttled"}))
    channel = shopify.create()
    assert shopify.slept == []  # never sleeps that long in-process
    assert shopify.subscriptions == {}
    rows = report(admin, channel)["subscriptions"]
    assert rows and all(r["status"] == "failed" and "throttled" in r["last_error"]
                        for r in rows)


def test_graphql_cost_throttling_is_waited_out(shopify, admin):
    # requested 100, 0 available, restored at 50/s: wait 2 s, then it goes through
    shopify.queued.append(shopify.throttled(requested=100, available=0.0, rate=50.0))
    channel = shopify.create()
    assert shopify.topics() == ALL_TOPICS
    assert shopify.slept and 1.5 < shopify.slept[0] <= 2.0
    assert shopify.operations[:2] == ["webhookSubscriptions", "webhookSubscriptions"]
    assert set(statuses(admin, channel).values()) == {"active"}


def test_long_graphql_throttling_raises_retry_later(shopify, app):
    channel = shopify.create(cancel=(), fulfill=())
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    shopify.queued.append(shopify.throttled(requested=1000, available=0.0, rate=50.0))
    with pytest.raises(RetryLater) as caught:
        adapter.list_subscriptions(view)
    assert 15 < caught.value.delay <= 20
    assert shopify.slept == []


def test_persistent_throttling_gives_up_with_retry_later(shopify, app):
    channel = shopify.create(cancel=(), fulfill=())
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    shopify.queued.extend([shopify.throttled(requested=10, available=0, rate=50)] * 10)
    with pytest.raises(RetryLater):
        adapter.list_subscriptions(view)
    assert len(shopify.operations) == 4  # first try + 3 retries


def test_low_bucket_paces_the_next_call(shopify, app, api):
    channel = shopify.create(cancel=(), fulfill=())
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    shopify.queued.append((200, {}, {
        "data": {"webhookSubscriptions": {"nodes": [], "pageInfo": {"hasNextPage": False}}},
        "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
                                "throttleStatus": {"maximumAvailable": 1000.0,
                                                   "currentlyAvailable": 0.0,
                                                   "restoreRate": 50.0}}}}))
    assert adapter.list_subscriptions(view) == []
    assert shopify.slept == []
    adapter.list_subscriptions(view)
    assert shopify.slept and 0.5 < shopify.slept[0] <= 1.0


def test_subscription_error_type(shopify, app):
    channel = shopify.create(cancel=(), fulfill=())
    from core.adapters import SubscriptionSpec
    from core.testing import channel_view
    view = channel_view(app, channel["id"])
    adapter = app.extensions["orderhooks.channel_types"].get("shopify")
    shopify.create_errors["ORDERS_CANCELLED"] = [{"field": None, "message": "Invalid topic"}]
    with pytest.raises(SubscriptionError, match="Shopify refused it") as raised:
        adapter.create_subscription(view, SubscriptionSpec("ORDERS_CANCELLED",
                                                           channel["webhook_url"]))
    assert "Invalid topic" not in str(raised.value)


# -- destination and credentials ------------------------------------------------------------


def test_check_destination_needs_https():
    adapter = ShopifyAdapter()
    adapter.check_destination("https://orderhooks.example.com/webhooks/shopify/1")
    adapter.check_destination("https://orderhooks.example.com:8443/webhooks/shopify/1")
    with pytest.raises(ValueError, match="https"):
        adapter.check_destination("http://orderhooks.example.com/webhooks/shopify/1")


class TestPlainHttpPublicUrl:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PUBLIC_BASE_URL": "http://orderhooks.example.com"}

    def test_channel_needing_hooks_is_refused(self, shopify, api):
        response = shopify.create(expect=422)
        assert "https" in response["message"]
        assert shopify.graphql_calls() == []

    def test_channel_without_statuses_is_fine(self, shopify, admin):
        """No status selected: no subscription is needed, so the plain-http URL is no
        obstacle and Shopify is not called at all."""
        channel = shopify.create(cancel=(), fulfill=())
        assert channel["subscriptions"] == []
        assert shopify.graphql_calls() == [] and shopify.subscriptions == {}
        assert admin.get(f"/channels/{channel['id']}")["active"] is True


VALID = {"shop_domain": SHOP, "access_token": TOKEN, "client_secret": "s"}


@pytest.mark.parametrize("credentials, field", [
    ({k: v for k, v in VALID.items() if k != "client_secret"}, "client_secret"),
    ({k: v for k, v in VALID.items() if k != "access_token"}, "access_token"),
    ({k: v for k, v in VALID.items() if k != "shop_domain"}, "shop_domain"),
    ({**VALID, "shop_domain": "https://my-store.myshopify.com"}, "shop_domain"),
    ({**VALID, "shop_domain": "my-store.example.com"}, "shop_domain"),
    ({**VALID, "shop_domain": "evil.com/.myshopify.com"}, "shop_domain"),
    ({**VALID, "api_version": "2026-7"}, "api_version"),
    ({**VALID, "api_version": "latest"}, "api_version"),
    ({**VALID, "api_base_url": "ftp://x"}, "api_base_url"),
    ({**VALID, "client_secret": ""}, "client_secret"),
    ({**VALID, "store_hash": "abc"}, "store_hash"),
])
def test_invalid_credentials_are_refused(make_channel, credentials, field):
    answer = make_channel("shopify", credentials, cancel=(), fulfill=(), expect=422)
    assert field in answer["details"]["credentials"], answer


def test_valid_credentials_with_the_optional_fields(shopify, admin):
    channel = shopify.create(previous_client_secret="old", api_version="2026-07",
                             shop_domain="OrderHooks-Test.myshopify.com")
    assert "credentials" not in channel  # never returned
    from core.testing import channel_view
    creds = channel_view(shopify.app, channel["id"]).credentials
    assert creds["shop_domain"] == SHOP  # normalised
    assert creds["previous_client_secret"] == "old"


def test_credentials_are_patched_partially(shopify, admin):
    channel = shopify.create()
    admin.patch(f"/channels/{channel['id']}", {"credentials": {"api_version": "2026-10"}})
    admin.patch(f"/channels/{channel['id']}", {"credentials": {"api_version": "soon"}},
                expect=422)
    history = admin.get(f"/channels/{channel['id']}/history")
    assert history[-1]["new_value"] == {"changed": ["api_version"]}


def test_adapter_is_registered_through_its_entry_point(admin):
    plugins = {p["name"]: p for p in admin.get("/plugins")}
    assert plugins["shopify"]["status"] == "loaded"
    assert plugins["shopify"]["channel_types"] == ["shopify"]


def test_stand_in_refuses_unmatched_calls(api):
    """Sanity check of the harness: anything not stubbed fails loudly."""
    import requests
    with pytest.raises(Exception):
        requests.post(f"https://{SHOP}/admin/api/2020-01/graphql.json", timeout=1)
    assert responses  # the module is used by the stand-in


def test_string_errors_are_reported(shopify, admin):
    shopify.queued.append((200, {}, {"errors": "Not Found"}))
    channel = shopify.create()
    assert "GraphQL errors" in report(admin, channel)["subscriptions"][0]["last_error"]
    assert "Not Found" not in json.dumps(report(admin, channel))
