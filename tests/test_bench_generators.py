"""Each channel's benchmark rows are loaded by one generator: wrk cannot sign each request, so a
channel whose deliveries are signed per request is loaded by the Python generator for H, M and
the intake alike, and baseline M's Shopify requests are signed per request like the intake's."""
import hashlib
import hmac
import threading
from types import SimpleNamespace

import pytest
from werkzeug.test import Client

from bench import baseline_m, targets
from bench.session import Session


def _session(use_wrk: bool) -> Session:
    session = Session.__new__(Session)  # only the generator choice: no processes, no databases
    session.use_wrk = use_wrk
    session.args = SimpleNamespace(connections=1)
    return session


def test_a_channel_signed_per_request_is_loaded_by_python_on_every_side():
    session = _session(use_wrk=True)
    assert session.generator("bigcommerce") == "wrk"
    assert session.generator("shopify") == "python"
    assert _session(use_wrk=False).generator("bigcommerce") == "python"


def test_wrk_refuses_a_template_signed_per_request():
    with pytest.raises(ValueError, match="cannot sign"):
        _session(use_wrk=True).load("http://127.0.0.1:9", targets.template("m-shopify"), 1,
                                    "r", "wrk")


def test_baseline_m_shopify_requests_are_distinct_and_signed_as_m_checks(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    baseline_m.create_table(url)
    monkeypatch.setattr(baseline_m, "DATABASE", url)
    monkeypatch.setattr(baseline_m, "_local", threading.local())
    client = Client(baseline_m.app)
    tpl = targets.template("m-shopify")
    bodies = set()
    for unique in ("a", "b"):
        path, headers, body = tpl.render(unique)
        assert headers["X-Bench-Signature"] == hmac.new(
            targets.M_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert client.post(path, data=body, headers=headers).status_code == 200
        bodies.add(body)
    assert len(bodies) == 2
    path, headers, body = tpl.render("c")
    assert client.post(path, data=body + b" ", headers=headers).status_code == 401
