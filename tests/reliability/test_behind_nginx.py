"""The service behind the production proxy: deploy/nginx/orderhooks.conf, run by Debian's nginx
(installed by scripts/install-nginx when missing). nginx reads every request whole before
gunicorn sees it, so slow clients never reach gunicorn at all."""
from __future__ import annotations

import re

import pytest
import requests

from core.config import SETTINGS

from .live import (NGINX_CONF, SECRET_HEADER, Nginx, assert_answered_under_slow_clients, db_engine,
                   install_nginx, scalar, timed_deliveries)

SLOW_SOCKETS = 200
ATTACK_SECONDS = 12


@pytest.fixture
def proxied(stack, tmp_path):
    if install_nginx() is None:
        pytest.skip("nginx is not installed and scripts/install-nginx could not install it "
                    "(needs root and Debian's package archive)")
    stack.start_standin()
    stack.start_web(workers=2)
    proxy = Nginx(stack.web_url.split("//", 1)[1], tmp_path / "nginx")
    yield proxy
    proxy.stop()


def test_the_proxys_body_limit_is_the_services():
    size = re.search(r"client_max_body_size\s+(\d+)([km]?);", NGINX_CONF.read_text())
    limit = int(size.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[size.group(2)]
    assert limit == SETTINGS["MAX_BODY_BYTES"][0]
    assert f"limited to {limit} bytes" in NGINX_CONF.read_text()


def test_a_delivery_through_the_proxy_is_stored_and_a_too_large_one_refused(stack, proxied,
                                                                          database_url):
    channel = stack.create_channel("proxied")
    results = timed_deliveries(stack, channel, proxied.url, seconds=0.1)
    assert [outcome for _, outcome in results] == [200]
    answer = requests.post(f"{proxied.url}/webhooks/bigcommerce/{channel['id']}",
                           data=b"x" * (SETTINGS["MAX_BODY_BYTES"][0] + 1), timeout=10,
                           headers={SECRET_HEADER: channel["secret"]})
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"
    engine = db_engine(database_url)
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 1
    engine.dispose()


def test_deliveries_are_answered_within_a_second_while_200_slow_clients_hold_the_proxy(
        stack, proxied):
    channel = stack.create_channel("proxied")
    assert_answered_under_slow_clients(stack, channel, proxied.url, SLOW_SOCKETS, ATTACK_SECONDS)
