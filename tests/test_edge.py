"""How the webhook edge is put together: mounted on /webhooks beside Flask, the inbox's INSERT
derived from the model, and the error answers and security headers shared with Flask."""
import json
from types import SimpleNamespace

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import EnvironBuilder, run_wsgi_app

from core import answers, inbox
from core.adapters import DeliveryInfo
from core.edge import MOUNT, WebhookEdge
from core.models import StoredDelivery


def assert_json_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.get_data())
    body = response.get_json()
    assert body["error"] == code and body["message"], body
    for name, value in answers.SECURITY_HEADERS:
        assert response.headers.get(name) == value, name
    return body


# -- mounting --------------------------------------------------------------------------------

def test_the_edge_is_mounted_with_the_dispatcher(app):
    dispatcher = app.wsgi_app
    assert isinstance(dispatcher, DispatcherMiddleware)
    assert isinstance(dispatcher.mounts[MOUNT], WebhookEdge)
    assert dispatcher.mounts[MOUNT].inbox is app.extensions["orderhooks.inbox"]


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/"])
def test_the_mount_point_itself_is_a_404_naming_the_url_shape(client, path):
    for method in ("POST", "GET"):
        body = assert_json_error(client.open(path, method=method), 404, "unknown_channel")
        assert "/webhooks/<channel_type>/<channel_id>" in body["message"]


def test_a_path_that_only_starts_like_the_mount_is_flasks_404(client):
    response = client.post("/webhooksX/bigcommerce/1", data=b"{}")
    assert_json_error(response, 404, "not_found")


def test_the_edge_sees_the_path_below_the_mount_and_flask_the_whole_path(bc, app):
    """Under the dispatcher the edge gets PATH_INFO without /webhooks (SCRIPT_NAME gains it),
    also when the whole service is itself mounted under a SCRIPT_NAME; Flask's routes are
    unchanged."""
    bc.create()
    seen = {}
    edge = app.wsgi_app.mounts[MOUNT]
    receive = edge.receive

    def spy(environ, rest):
        seen.update(script=environ["SCRIPT_NAME"], path=environ["PATH_INFO"], rest=rest)
        return receive(environ, rest)

    edge.receive = spy
    body = json.dumps(bc.payload(order_id=250))
    builder = EnvironBuilder(path=f"/webhooks/bigcommerce/{bc.channel['id']}",
                             base_url="http://localhost/svc", method="POST", data=body,
                             headers={"Content-Type": "application/json",
                                      "X-Orderhooks-Secret": bc.secret})
    environ = builder.get_environ()
    assert environ["SCRIPT_NAME"] == "/svc"
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("200"), (status, b"".join(app_iter))
    assert seen == {"script": "/svc/webhooks", "path": f"/bigcommerce/{bc.channel['id']}",
                    "rest": f"bigcommerce/{bc.channel['id']}"}
    healthz = EnvironBuilder(path="/healthz", base_url="http://localhost/svc").get_environ()
    app_iter, status, _ = run_wsgi_app(app, healthz, buffered=True)
    assert status.startswith("200") and json.loads(b"".join(app_iter)) == {"status": "ok"}


# -- the inbox's INSERT ----------------------------------------------------------------------

def test_the_insert_writes_every_column_of_the_model_but_the_key_and_the_workers():
    table = StoredDelivery.__table__
    names = {column.name for column in table.columns}
    assert inbox.PROCESSING_COLUMNS <= names, inbox.PROCESSING_COLUMNS - names
    assert set(inbox.COLUMNS) == names - {c.name for c in table.primary_key} \
        - inbox.PROCESSING_COLUMNS
    # A column the ORM would fill on insert (a default) or that may not be NULL is written.
    for column in table.columns:
        if not column.primary_key and (column.default is not None or not column.nullable):
            assert column.name in inbox.COLUMNS, column.name
    # The worker's columns start empty: nothing fills them on insert.
    for name in inbox.PROCESSING_COLUMNS:
        assert table.c[name].nullable and table.c[name].default is None, name


def test_a_new_deliverys_row_has_a_value_for_each_insert_column(app):
    channel = SimpleNamespace(id=1, type="bigcommerce")
    row = inbox._row(channel, DeliveryInfo(key="k", topic="t"), "k", {}, b"{}",
                     StoredDelivery.received_at.default.arg(None))
    assert set(row) == set(inbox.COLUMNS)
    sql = app.extensions["orderhooks.inbox"]._insert(2)
    assert sql.startswith(f"INSERT INTO deliveries ({', '.join(inbox.COLUMNS)}) VALUES (")


# -- one set of answers ----------------------------------------------------------------------

def test_an_unexpected_failure_is_the_same_500_from_the_edge_and_from_flask(app, client, bc):
    @app.get("/broken")
    def broken_view():
        raise RuntimeError("a bug")

    bc.create()
    edge = app.wsgi_app.mounts[MOUNT]

    def broken(environ, rest):
        raise RuntimeError("a bug")

    edge.receive = broken
    from_edge = assert_json_error(bc.send(), 500, "internal_error")
    from_flask = assert_json_error(client.get("/broken"), 500, "internal_error")
    assert from_edge == from_flask == answers.internal_error()[1]
    assert "a bug" not in json.dumps(from_edge)


def test_database_unavailable_is_503_with_retry_after_from_flask(app, client):
    from sqlalchemy.exc import OperationalError

    @app.get("/down")
    def down():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    response = client.get("/down")
    body = assert_json_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == str(answers.RETRY_AFTER_SECONDS)
    assert "SELECT" not in body["message"]
