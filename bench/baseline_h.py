"""Baseline H: a bare Flask app whose POST route returns 200 (the HTTP + framework floor).

    python -m gunicorn -c core/gunicorn_conf.py 'bench.baseline_h:app'
"""
from flask import Flask

app = Flask("baseline_h")


@app.post("/webhooks/<channel_type>/<channel_id>")
def receive(channel_type, channel_id):
    return "", 200
