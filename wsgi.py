"""WSGI entry point for servers other than ``orderhooks web`` (uWSGI, mod_wsgi, or
``gunicorn wsgi:app`` from a checkout). ``orderhooks web`` serves the same application, built by
the same factory (``core:create_app()``), with orderhooks' gunicorn settings
(core/gunicorn_conf.py) and the checks of its start-up."""
from core import create_app

app = create_app()
