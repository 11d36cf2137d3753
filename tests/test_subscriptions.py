"""Webhook subscriptions on BigCommerce: created with the channel, repaired by the periodic check
(inactive → reactivated, missing → re-created), removed when no longer needed, refused for a
destination BigCommerce cannot deliver to, and every check recorded."""
import json

import pytest
import responses

from core.cli import main as cli
from core.subscriptions import check_all
from core.testing import PUBLIC_BASE_URL
from tests.conftest import BC_STORE

HOOKS = f"{BC_STORE}/v3/hooks"


def requests_to(api, method, url_prefix=HOOKS):
    return [c.request for c in api.calls
            if c.request.method == method and c.request.url.split("?")[0].startswith(url_prefix)]


def report(admin, channel_id):
    return admin.get(f"/channels/{channel_id}/subscriptions")


def test_created_when_the_channel_is_created(bc, api, admin):
    channel = bc.create()
    posts = requests_to(api, "POST")
    assert len(posts) == 1
    body = json.loads(posts[0].body)
    assert body["scope"] == "store/order/statusUpdated"
    assert body["destination"] == f"https://orderhooks.example.com/webhooks/bigcommerce/" \
                                  f"{channel['id']}"
    assert body["is_active"] is True
    assert body["headers"] == {"X-Orderhooks-Secret": bc.secret}
    assert posts[0].headers["X-Auth-Token"] == "token-1"
    assert channel["webhook_url"] == body["destination"]
    assert [(s["topic"], s["remote_id"], s["status"], s["last_action"])
            for s in channel["subscriptions"]] == [("store/order/statusUpdated", "1", "active",
                                                    "created")]
    events = report(admin, channel["id"])["events"]
    assert [(e["action"], e["remote_id"]) for e in events] == [("created", "1")]


def test_not_created_without_selected_statuses_until_some_are_selected(bc, api, admin):
    channel = bc.create(cancel=[], fulfill=[])
    assert requests_to(api, "POST") == [] and bc.hooks == {}
    assert channel["subscriptions"] == []
    patched = admin.patch(f"/channels/{channel['id']}",
                          {"valid_fulfillment_statuses": ["AWAITING_SHIPMENT"]})
    assert len(bc.hooks) == 1
    assert [s["status"] for s in patched["subscriptions"]] == ["active"]


def test_inactive_hook_is_reactivated_by_the_check(bc, api, admin, app):
    channel = bc.create()
    bc.hooks[1]["is_active"] = False  # BigCommerce deactivated it after failed deliveries
    results = check_all(app)
    assert [e["action"] for e in results[channel["id"]]] == ["reactivated"]
    puts = requests_to(api, "PUT")
    assert len(puts) == 1 and puts[0].url.endswith("/v3/hooks/1")
    assert json.loads(puts[0].body)["is_active"] is True
    assert bc.hooks[1]["is_active"] is True
    assert len(bc.hooks) == 1 and len(requests_to(api, "POST")) == 1
    seen = report(admin, channel["id"])
    assert seen["subscriptions"][0]["last_action"] == "reactivated"
    assert seen["subscriptions"][0]["status"] == "active"
    assert [e["action"] for e in seen["events"]] == ["reactivated", "created"]


def test_missing_hook_is_recreated_by_the_check(bc, api, admin, app):
    channel = bc.create()
    bc.hooks.clear()  # someone deleted it in BigCommerce
    results = check_all(app)
    assert [e["action"] for e in results[channel["id"]]] == ["recreated"]
    assert len(bc.hooks) == 1
    hook = next(iter(bc.hooks.values()))
    assert hook["is_active"] is True and hook["headers"] == {"X-Orderhooks-Secret": bc.secret}
    seen = report(admin, channel["id"])
    assert seen["subscriptions"][0]["remote_id"] == str(hook["id"])
    assert seen["events"][0]["action"] == "recreated"
    assert "disappeared" in seen["events"][0]["message"]


def test_healthy_hook_check_changes_nothing(bc, api, admin, app):
    channel = bc.create()
    calls = len(api.calls)
    results = check_all(app)
    assert [e["action"] for e in results[channel["id"]]] == ["ok"]
    assert [c.request.method for c in api.calls[calls:]] == ["GET"]
    assert [e["action"] for e in report(admin, channel["id"])["events"]] == ["created"]
    assert report(admin, channel["id"])["subscriptions"][0]["last_checked_at"]


def test_cli_check_repairs_and_reports(bc, api, admin, app):
    channel = bc.create()
    bc.hooks.clear()
    runner = app.test_cli_runner()
    result = runner.invoke(cli, ["subscriptions", "check"])
    assert result.exit_code == 0, result.output
    assert "recreated" in result.output and f"channel {channel['id']}" in result.output
    assert len(bc.hooks) == 1
    bc.hooks[next(iter(bc.hooks))]["is_active"] = False
    result = runner.invoke(cli, ["subscriptions", "check", "--channel", str(channel["id"])])
    assert result.exit_code == 0 and "reactivated" in result.output
    assert all(h["is_active"] for h in bc.hooks.values())


def test_worker_housekeeping_runs_the_check(bc, app, worker):
    bc.create()
    bc.hooks.clear()
    worker.housekeeping(force=True)
    assert len(bc.hooks) == 1


def test_removed_when_both_status_lists_are_emptied(bc, api, admin):
    channel = bc.create()
    admin.patch(f"/channels/{channel['id']}", {"valid_cancellation_statuses": []})
    assert len(bc.hooks) == 1  # fulfilments still need it
    patched = admin.patch(f"/channels/{channel['id']}", {"valid_fulfillment_statuses": []})
    deletes = requests_to(api, "DELETE")
    assert len(deletes) == 1 and deletes[0].url.endswith("/v3/hooks/1")
    assert bc.hooks == {}
    assert patched["subscriptions"] == []
    seen = report(admin, channel["id"])
    assert seen["subscriptions"] == []
    assert seen["events"][0]["action"] == "deleted"
    assert "no longer needed" in seen["events"][0]["message"]


def test_removed_when_the_channel_is_deactivated_and_back_when_reactivated(bc, api, admin, app):
    channel = bc.create()
    patched = admin.patch(f"/channels/{channel['id']}", {"active": False})
    assert bc.hooks == {} and patched["subscriptions"] == []
    assert "inactive" in report(admin, channel["id"])["events"][0]["message"]
    check_all(app)  # the periodic check does not bring it back
    assert bc.hooks == {}
    admin.patch(f"/channels/{channel['id']}", {"active": True})
    assert len(bc.hooks) == 1


def test_other_destinations_are_left_alone_and_duplicates_removed(bc, api, admin, app):
    channel = bc.create()
    bc.hooks[50] = {"id": 50, "scope": "store/order/statusUpdated", "is_active": True,
                    "destination": "https://someone-else.example/hook", "headers": {}}
    bc.hooks[51] = {**bc.hooks[1], "id": 51}  # a duplicate of ours
    api.add_callback(responses.DELETE, f"{HOOKS}/51", callback=bc._delete_hook)
    actions = [e["action"] for e in check_all(app)[channel["id"]]]
    assert sorted(actions) == ["deleted", "ok"]
    assert set(bc.hooks) == {1, 50}


class TestHttpBaseUrl:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PUBLIC_BASE_URL": "http://orderhooks.example.com"}

    def test_non_https_base_url_is_refused(self, bc, api, admin):
        with pytest.raises(AssertionError):
            bc.create()
        response = admin.request("POST", "/channels", json={
            "type": "bigcommerce", "name": "s", "credentials": {
                "store_hash": "abc123", "access_token": "t", "api_base_url": "https://bc.test"},
            "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
        assert response.status_code == 422
        body = response.get_json()
        assert body["error"] and "ORDERHOOKS_PUBLIC_BASE_URL" in body["message"]
        assert "https" in body["message"] and "443" in body["message"]
        assert admin.get("/channels") == []
        assert requests_to(api, "POST") == []

    def test_a_channel_needing_no_hooks_is_fine_until_statuses_are_selected(self, bc, api, admin):
        channel = bc.create(cancel=[], fulfill=[])
        response = admin.request("PATCH", f"/channels/{channel['id']}",
                                 json={"valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
        assert response.status_code == 422
        assert "https" in response.get_json()["message"]
        assert admin.get(f"/channels/{channel['id']}")["valid_cancellation_statuses"] == []
        assert bc.hooks == {}


class TestNon443BaseUrl:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PUBLIC_BASE_URL": "https://orderhooks.example.com:8443"}

    def test_non_443_port_is_refused(self, bc, api, admin):
        response = admin.request("POST", "/channels", json={
            "type": "bigcommerce", "name": "s", "credentials": {
                "store_hash": "abc123", "access_token": "t", "api_base_url": "https://bc.test"},
            "valid_fulfillment_statuses": ["AWAITING_SHIPMENT"]})
        assert response.status_code == 422
        assert "443" in response.get_json()["message"]
        assert admin.get("/channels") == []


class TestExplicit443:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PUBLIC_BASE_URL": "https://orderhooks.example.com:443/"}

    def test_explicit_port_443_is_fine(self, bc, admin):
        channel = bc.create()
        assert len(bc.hooks) == 1
        assert channel["webhook_url"].endswith(f"/webhooks/bigcommerce/{channel['id']}")


def test_api_failure_during_check_is_recorded_as_failed(bc, api, admin, app):
    channel = bc.create()
    api.replace(responses.GET, HOOKS, status=500, json={"title": "Internal Server Error"})
    results = check_all(app)
    assert [e["action"] for e in results[channel["id"]]] == ["failed"]
    seen = report(admin, channel["id"])
    assert seen["events"][0]["action"] == "failed"
    assert "500" in seen["events"][0]["message"]
    sub = seen["subscriptions"][0]
    assert sub["status"] == "failed" and "500" in sub["last_error"]
    assert sub["remote_id"] == "1"  # what we knew is kept
    result = app.test_cli_runner().invoke(cli, ["subscriptions", "check"])
    assert result.exit_code == 1 and "failed" in result.output

    api.replace(responses.CallbackResponse(responses.GET, HOOKS, callback=bc._list_hooks))
    check_all(app)
    sub = report(admin, channel["id"])["subscriptions"][0]
    assert sub["status"] == "active" and sub["last_error"] is None


def test_api_failure_when_creating_is_recorded_and_repaired_later(bc, api, admin, app):
    api.replace(responses.POST, HOOKS, status=503, json={"title": "unavailable"})
    channel = bc.create()
    assert channel["subscriptions"][0]["status"] == "failed"
    assert report(admin, channel["id"])["events"][0]["action"] == "failed"
    api.replace(responses.CallbackResponse(responses.POST, HOOKS, callback=bc._create_hook))
    assert [e["action"] for e in check_all(app)[channel["id"]]] == ["created"]
    assert len(bc.hooks) == 1
    assert report(admin, channel["id"])["subscriptions"][0]["status"] == "active"


def test_post_subscriptions_checks_now(bc, admin):
    channel = bc.create()
    bc.hooks.clear()
    seen = admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert seen["events"][0]["action"] == "recreated"
    assert len(bc.hooks) == 1


def test_subscriptions_of_unknown_channel_is_404(admin):
    assert admin.get("/channels/999/subscriptions", expect=404)["error"]


def test_public_base_url_default_in_tests():
    assert PUBLIC_BASE_URL == "https://orderhooks.example.com"


def test_hooks_left_at_an_old_public_url_are_moved_and_foreign_ones_left_alone(bc, app):
    """After ORDERHOOKS_PUBLIC_BASE_URL changes, the check subscribes at the new URL and removes
    the hook it made at the old one; a hook another deployment made is not ours to delete."""
    from core.subscriptions import check_all
    channel = bc.create()
    path = f"/webhooks/bigcommerce/{channel['id']}"
    foreign = {"id": 99, "scope": "store/order/statusUpdated", "is_active": True,
               "destination": "https://staging.example.com" + path, "headers": {}}
    bc.hooks[99] = foreign
    app.config["PUBLIC_BASE_URL"] = "https://new.example.com"
    check_all(app)
    destinations = sorted(h["destination"] for h in bc.hooks.values())
    assert destinations == ["https://new.example.com" + path,
                            "https://staging.example.com" + path]
