"""The in-process anatomy (``bench/anatomy.py``) measures the intake of every Shopify body kind,
``orders/create`` ones included, and its per-step timing leaves the edge as it found it."""
from bench import anatomy, fill, targets
from bench.common import sqlite_url, upgrade
from bench.instructions import channel_template
from core import edge, inbox


def _app(tmp_path):
    url = sqlite_url(tmp_path, "anatomy")
    upgrade(url)
    return fill.make_app(url)


def test_create_kinds_get_a_shopify_channel_that_accepts_them(tmp_path):
    app = _app(tmp_path)
    try:
        tpl = channel_template(app, "shopify-create-200")
        assert tpl.path.startswith("/webhooks/shopify/")
        client = app.test_client()
        answers = [client.post(path, data=body, headers=headers)
                   for path, headers, body in (tpl.render("a1"), tpl.render("a2"))]
        assert [a.status_code for a in answers] == [200, 200], answers[0].get_data()[:300]
        assert [a.get_json()["status"] for a in answers] == ["accepted", "accepted"]
    finally:
        app.extensions["orderhooks.db"].dispose()


def test_steps_times_every_step_and_restores_the_methods(tmp_path):
    app = _app(tmp_path)
    before = {name: (edge.WebhookEdge if owner == "edge" else inbox.Writer).__dict__[name]
              for owner, name in anatomy.STEPS}
    try:
        tpl = channel_template(app, "shopify-create")
        lines = anatomy.steps(anatomy._caller(app.test_client()), 3, tpl, "t")
    finally:
        app.extensions["orderhooks.db"].dispose()
    assert [line.split()[0] for line in lines] == [
        "edge._route", "edge._read_body", "edge._find_channel", "edge._authenticate",
        "edge._inspect", "inbox._transaction", "inbox.store", "edge._store"]
    assert all(float(line.split()[1]) >= 0 for line in lines)
    after = {name: (edge.WebhookEdge if owner == "edge" else inbox.Writer).__dict__[name]
             for owner, name in anatomy.STEPS}
    assert after == before
