"""The benchmark's Shopify intake requests are distinct, authentic deliveries: orderhooks
de-duplicates Shopify on topic + raw body, so a load of one body re-signed once would measure
nothing but the duplicate path."""
from bench import targets


def test_shopify_template_renders_distinct_signed_deliveries(client, make_channel, admin, api):
    channel = make_channel("shopify", {"shop_domain": targets.SHOP_DOMAIN, "access_token": "t",
                                       "client_secret": targets.SHOPIFY_SECRET},
                           cancel=(), fulfill=())
    tpl = targets.template("shopify", channel_id=channel["id"])
    answers = []
    for unique in ("a1", "a2", "a3"):
        path, headers, body = tpl.render(unique)
        answers.append(client.post(path, data=body, headers=headers))
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].get_json()
    assert [a.get_json()["status"] for a in answers] == ["accepted"] * 3
    assert len(admin.get("/deliveries")) == 3
