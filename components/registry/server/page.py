"""The reviewers' approval page, ``/wikilm/approvals``.

Per model: the champion; each version awaiting approval with the server's gate verdict, its
metrics beside the champion's and the baselines', links to its MLflow run; Approve / Reject
with a reason; and the model's recent history. The reviewer is whoever signed in: the form
carries no name. A refused decision is shown on the page with its reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, render_template_string, request
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf

from components.registry.server import decisions
from components.registry.server.api import context, model_rows, signed_in, versions_of
from components.registry.server.decisions import Context, Refused
from components.registry.server.policy import MODELS

page = Blueprint("wikilm_page", __name__)
PATH = "/wikilm/approvals"
HISTORY_ROWS = 20

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wikilm approvals</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
.refused { background: #fde2e1; padding: .6em; } .done { background: #e1f5e1; padding: .6em; }
.ok { color: #1a7f37; } .fail { color: #b42318; }
</style></head><body>
<h1>Model versions awaiting approval</h1>
<p>Signed in as <b id="user">{{ user }}</b>. Rules: approval {{ rules.approval }},
four-eyes {{ "on" if rules.four_eyes else "off" }}.</p>
{% if message %}<p id="message" class="{{ outcome }}">{{ message }}</p>{% endif %}
{% for m in models %}
<section id="model-{{ m.name }}">
<h2>{{ m.name }}</h2>
<p>Champion: {% if m.champion %}<a href="{{ m.champion.link }}">v{{ m.champion.version }}</a>
{% else %}none{% endif %}</p>
{% for v in m.pending %}
<div class="pending" id="pending-{{ m.name }}-{{ v.version }}">
<h3>v{{ v.version }}, registered by {{ v.author }}
(<a href="{{ v.link }}">MLflow run</a>)</h3>
<ul>{% for r in v.gate.reasons %}
<li class="{{ 'ok' if r.startswith('ok') else 'fail' }}">{{ r }}</li>{% endfor %}</ul>
<table><tr><th>metric</th><th>v{{ v.version }}</th><th>champion</th><th>baseline</th></tr>
{% for row in v.comparison %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td>
<td>{{ row[2] }}</td><td>{{ row[3] }}</td></tr>{% endfor %}</table>
<form method="post" action="{{ path }}">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<input type="hidden" name="model" value="{{ m.name }}">
<input type="hidden" name="version" value="{{ v.version }}">
<label>Reason <input type="text" name="reason" required></label>
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="reject">Reject</button>
</form></div>
{% else %}<p>Nothing awaits approval.</p>{% endfor %}
<h3>History</h3>
<table class="history" id="history-{{ m.name }}">
<tr><th>when (UTC)</th><th>version</th><th>action</th><th>by</th><th>reason</th></tr>
{% for e in m.history %}<tr><td>{{ e.when }}</td><td>v{{ e.version }}</td>
<td>{{ e.action }}</td><td>{{ e.actor }}</td><td>{{ e.reason }}</td></tr>{% endfor %}
</table></section>
{% endfor %}
</body></html>
"""


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def comparison(version: dict, champion: dict | None) -> list[tuple[str, str, str, str]]:
    """Rows of metric, this version, the champion, the baseline."""
    e = version["evidence"] or {}
    theirs = (champion or {}).get("metrics", {})
    if "bits_per_byte" in e:
        rows = [
            (
                "bits per byte, held-out",
                e["bits_per_byte"],
                theirs.get("val_bits_per_byte"),
                f"unigram {_number(e['unigram_bits_per_byte'])}",
            )
        ]
    else:
        rows = [
            ("macro-F1, test split", e.get("macro_f1"), e.get("champion_macro_f1"),
             f"TF-IDF + LR {_number(e.get('tfidf_macro_f1'))}"),
            ("accuracy", e.get("accuracy"), theirs.get("accuracy"), "-"),
            ("p95 latency (ms)", e.get("p95_latency_ms"), None, "-"),
        ]  # fmt: skip
    return [(name, _number(mine), _number(champ), base) for name, mine, champ, base in rows]


def run_link(ctx: Context, run_id: str | None) -> str:
    """The MLflow UI's page of a run."""
    from mlflow.server.handlers import _get_tracking_store

    try:
        experiment = _get_tracking_store().get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a missing run only loses the link
        return "#"
    return f"/#/experiments/{experiment}/runs/{run_id}"


def model_view(ctx: Context, model: str) -> dict:
    """One model's section of the page."""
    versions = versions_of(ctx, model)
    champion = next((v for v in versions if v["champion"]), None)
    pending = [v for v in versions if v["status"] == "pending"]
    for v in pending:
        v["comparison"] = comparison(v, champion)
        v["link"] = run_link(ctx, v["run_id"])
    if champion:
        champion["link"] = f"/#/models/{model}/versions/{champion['version']}"
    history = list(reversed(model_rows(ctx, model)))[:HISTORY_ROWS]
    shown = [{**r.__dict__, "when": _utc(r.timestamp_ms)} for r in history]
    return {"name": model, "champion": champion, "pending": pending, "history": shown}


def _utc(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(message: str = "", outcome: str = "", status: int = 200) -> Response:
    """The page, with the outcome of the decision just sent, if any."""
    ctx = context()
    html = render_template_string(
        TEMPLATE,
        user=signed_in(),
        rules=ctx.config.promote,
        models=[model_view(ctx, model) for model in MODELS],
        message=message,
        outcome=outcome,
        csrf=generate_csrf(),
        path=PATH,
    )
    return Response(html, status=status, mimetype="text/html")


@page.get(PATH)
def show() -> Response:
    """The approval page."""
    return render()


@page.post(PATH)
def decide() -> Response:
    """Approve or reject from the page's form; the page again, with the outcome."""
    form = request.form
    try:
        validate_csrf(form.get("csrf_token"))
    except (CSRFError, Exception):  # noqa: BLE001 - flask-wtf raises ValidationError too
        return render("The form expired: reload the page and decide again.", "refused", 400)
    model, number, reason = form.get("model", ""), form.get("version", ""), form.get("reason", "")
    act = decisions.approve if form.get("action") == "approve" else decisions.reject
    try:
        row = act(context(), signed_in(), model, number, reason)
    except Refused as refused:
        return render(f"Refused: {refused.message}", "refused", refused.status)
    return render(f"{model} v{number} {row.action} by {row.actor}.", "done")
