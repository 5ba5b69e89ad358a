"""Server-rendered HTML of each page. Live parts are marked for `static/console.js`, which fills them
again from each Server-Sent Event: `data-field` (a value), `data-table` (rows), `data-chart` (series).
Every value is escaped here; the script sets text, never HTML."""

from __future__ import annotations

from html import escape
from typing import Any

NAV = (("/", "Overview"), ("/streams", "Streams"), ("/subscriptions", "Subscriptions"), ("/editor", "SQL editor"),
       ("/archives", "Archives"))
STREAM_COLUMNS = ("name", "topic", "format", "messages", "rows", "deadletters", "lag")
SUBSCRIPTION_COLUMNS = ("name", "kind", "stream", "output", "paused", "rows_in", "rows_out", "late_rows", "errors",
                        "state_bytes")
CONNECTOR_COLUMNS = ("name", "kind", "connected", "reads", "errors", "connection_failures", "last_error")
LINKS = {"streams": {"name": "/streams/"}, "subscriptions": {"name": "/subscriptions/"}}


def layout(title: str, body: str, csrf: str, events: str | None = None, current: str = "",
           logout: bool = False) -> str:
    nav = "".join(f'<a href="{href}"{" class=current" if href == current else ""}>{label}</a>'
                  for href, label in NAV)
    events_attr = f' data-events="{escape(events)}"' if events else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1"><link rel=icon href="data:,">'
        f'<meta name=csrf content="{escape(csrf)}"><title>{escape(title)} · Arros</title>'
        '<link rel=stylesheet href="/static/uPlot.min.css"><link rel=stylesheet href="/static/console.css">'
        '<script src="/static/uPlot.iife.min.js" defer></script><script src="/static/console.js" defer></script>'
        f'</head><body><header><a class=brand href="/">Arros</a><nav>{nav}</nav>'
        '<span id=live class=live title="live updates">●</span>'
        + (f'<form method=post action=/logout class=logout><input type=hidden name=csrf value="{escape(csrf)}">'
           "<button type=submit id=logout>Log out</button></form>" if logout else "")
        + "</header>"
        f"<main{events_attr}><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def field(path: str, value: Any) -> str:
    return f'<span data-field="{escape(path)}">{escape(_text(value))}</span>'


def facts(pairs: list[tuple[str, str, Any]]) -> str:
    """A definition list of live values: (label, data path, value)."""
    items = "".join(f"<div><dt>{escape(label)}</dt><dd>{field(path, value)}</dd></div>" for label, path, value in pairs)
    return f"<dl class=facts>{items}</dl>"


def table(key: str, value: Any, columns: tuple[str, ...] | None = None, links: dict[str, str] | None = None) -> str:
    """Rows as a table: a list of dicts (`columns` chosen) or `{"columns", "rows"}` (a live table)."""
    links = links or {}
    if isinstance(value, dict):
        names, rows = value.get("columns", []), value.get("rows", [])
        note = value.get("note")
    else:
        names, rows, note = list(columns or ()), [[row.get(c) for c in columns or ()] for row in value], None
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    body = "".join("<tr>" + "".join(_cell(n, v, links) for n, v in zip(names, row, strict=False)) + "</tr>"
                   for row in rows)
    attrs = f' data-table="{escape(key)}"'
    if columns:
        attrs += f' data-columns="{escape(",".join(columns))}"'
    if links:
        attrs += " " + " ".join(f'data-link-{escape(k)}="{escape(v)}"' for k, v in links.items())
    empty = f"<p class=note data-note=\"{escape(key)}\">{escape(note or '')}</p>"
    return f"<div class=scroll><table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{empty}"


def chart(key: str, series: list[tuple[str, str]], accumulate: bool = False, time_axis: bool = True) -> str:
    """A uPlot chart of `data[key]` (`{"t": [...], name: [...]}`); `accumulate`: of `data[key]` values
    (a dict of numbers) collected over time by the page itself."""
    spec = ",".join(f"{name}:{label}" for name, label in series)
    extra = " data-accumulate" if accumulate else ""
    extra += "" if time_axis else " data-plain-x"
    return f'<div class=chart data-chart="{escape(key)}" data-series="{escape(spec)}"{extra}></div>'


def overview_body(data: dict[str, Any]) -> str:
    return (
        "<section><h2>Service</h2>"
        + facts([("broker", "broker", data["broker"]), ("connection", "connected", data["connected"]),
                 ("health", "status", data["status"]), ("reasons", "reasons", data["reasons"]),
                 ("messages in", "messages_in", data["messages_in"]),
                 ("results out", "results_out", data["results_out"]),
                 ("dead letters", "deadletters", data["deadletters"]), ("pending", "pending", data["pending"]),
                 ("outputs queued", "outputs_queued", data["outputs_queued"]), ("watermark lag", "lag", data["lag"]),
                 ("CPU", "cpu", data["cpu"]), ("RSS", "rss", data["rss"])])
        + "</section><section class=charts><div><h2>Messages per second</h2>"
        + chart("rates", [("in", "in"), ("out", "results out")])
        + "</div><div><h2>CPU % (of one core)</h2>" + chart("rates", [("cpu", "CPU %")])
        + "</div><div><h2>Resident memory (MiB)</h2>" + chart("rates", [("rss", "RSS MiB")])
        + "</div></section><section><h2>Streams</h2>"
        + table("streams", data["streams"], STREAM_COLUMNS, LINKS["streams"])
        + "</section><section><h2>Subscriptions</h2>"
        + table("subscriptions", data["subscriptions"], SUBSCRIPTION_COLUMNS, LINKS["subscriptions"])
        + "</section><section><h2>Connectors</h2>"
        + (table("connectors", data["connectors"], CONNECTOR_COLUMNS) if data["connectors"]
           else "<p class=note>no connectors configured</p>")
        + "</section>"
    )


def streams_body(data: dict[str, Any]) -> str:
    return table("streams", data["streams"], STREAM_COLUMNS, LINKS["streams"])


def subscriptions_body(data: dict[str, Any]) -> str:
    return (table("subscriptions", data["subscriptions"], SUBSCRIPTION_COLUMNS, LINKS["subscriptions"])
            + '<p><a href="/editor">Create a subscription in the SQL editor</a></p>')


def stream_body(data: dict[str, Any]) -> str:
    return (
        facts([("topic", "topic", data["topic"]), ("format", "format", data["format"]),
               ("schema", "schema_kind", data["schema_kind"]), ("messages", "messages", data["messages"]),
               ("rows", "rows", data["rows"]), ("dead letters", "deadletters", data["deadletters"]),
               ("watermark lag", "lag", data["lag"])])
        + "<section class=charts><div><h2>Messages per second</h2>" + chart("rates", [("messages", "messages")])
        + "</div><div><h2>Schema</h2>" + table("schema", data["schema"], ("column", "type")) + "</div></section>"
        + "<section><h2>Latest rows</h2>" + table("latest", data["latest"]) + "</section>"
        + "<section><h2>Recent dead letters</h2>" + table("dead", data["dead"]) + "</section>"
    )


def subscription_body(data: dict[str, Any]) -> str:
    status = data["status"]
    name = escape(data["name"])
    return (
        f"<pre class=sql>{escape(data['sql'])}</pre>"
        + facts([("kind", "kind", data["kind"]), ("stream", "stream", data["stream"]),
                 ("output", "output", data["output"]), ("origin", "origin", data["origin"]),
                 ("state", "paused", data["paused"]), ("rows in", "status.rows_in", status["rows_in"]),
                 ("rows out", "status.rows_out", status["rows_out"]),
                 ("messages out", "status.messages_out", status["messages_out"]),
                 ("late rows", "status.late_rows", status["late_rows"]), ("errors", "status.errors", status["errors"]),
                 ("last error", "status.last_error", status["last_error"]),
                 ("state rows", "status.state_rows", status["state_rows"]),
                 ("state bytes", "status.state_bytes", status["state_bytes"]),
                 ("last result", "status.last_emit", status["last_emit"])])
        + f"<p class=note>{escape(data['how'])} · <a href=\"/editor?name={name}\">edit, pause or drop</a></p>"
        + "<section class=charts><div><h2>Rows per second</h2>"
        + chart("rates", [("rows_in", "rows in"), ("rows_out", "rows out")])
        + "</div><div><h2>Numeric columns (mean of the latest results)</h2>"
        + chart("means", [], accumulate=True) + "</div></section>"
        + "<section><h2>Latest results</h2>" + table("latest", data["latest"]) + "</section>"
    )


def editor_body(name: str, sql: str, output: str, available: bool) -> str:
    if not available:
        return "<p class=error>This service has no control plane, so subscriptions cannot be changed here.</p>"
    buttons = "".join(f'<button type=button data-op="{op}" id="op-{op}">{label}</button>' for op, label in (
        ("create", "Create"), ("replace", "Replace"), ("explain", "Explain"), ("pause", "Pause"),
        ("resume", "Resume"), ("drop", "Drop")))
    return (
        "<form id=editor class=editor>"
        f'<label>Name <input name=name id=name value="{escape(name)}" pattern="[A-Za-z_][A-Za-z0-9_]*" '
        "required></label>"
        f'<label>Output topic template <input name=output id=output value="{escape(output)}" '
        'placeholder="derived/{machine}/hot (optional)"></label>'
        f"<label>SQL<textarea name=sql id=sql rows=10 spellcheck=false>{escape(sql)}</textarea></label>"
        f"<div class=buttons>{buttons}</div></form>"
        "<div id=editor-error class=error hidden></div><div id=editor-result class=result hidden></div>"
        '<p class=note>Requests go through the control plane, as on the control topic: the same checks, '
        "limits and read-only rules. Subscriptions of the config file can be paused and resumed here, and "
        "changed only in the file.</p>"
    )


def archives_body(data: dict[str, Any]) -> str:
    return (
        f"<p class=note>Archive folder: <code>{escape(data['root'])}</code> {escape(data.get('note', ''))}</p>"
        + table("archives", data["archives"], ("table", "kind", "partitions", "files", "bytes", "newest"))
        + "<section><h2>Query</h2><form id=query class=editor>"
        + "<label><span>Read-only SQL over the archives, as <code>arros query</code> runs it</span>"
        + "<textarea name=sql id=query-sql rows=5 "
        + "spellcheck=false>" + escape(_example_query(data)) + "</textarea></label>"
        + "<div class=buttons><button type=submit id=run-query>Run</button></div></form>"
        + "<div id=query-error class=error hidden></div><p id=query-summary class=note></p>"
        + '<div class=chart id=query-chart></div><div class=scroll><table id=query-result></table></div></section>'
        + "<section><h2>Partitions</h2>"
        + table("partitions", data["partitions"], ("table", "partition", "files", "bytes")) + "</section>"
    )


def login_body(error: str | None, token_generated: bool, next_path: str = "/") -> str:
    where = ("the token printed in the service's log at start" if token_generated
             else "the password of the config file's [web] table")
    message = f"<p class=error id=login-error>{escape(error)}</p>" if error else ""
    return (f"{message}<form method=post action=/login class=editor><label>Password or token ({where})"
            f'<input type=hidden name=next value="{escape(next_path)}">'
            "<input type=password name=password id=password autofocus required></label>"
            "<div class=buttons><button type=submit id=login>Log in</button></div></form>")


def _example_query(data: dict[str, Any]) -> str:
    if not data["archives"]:
        return "SELECT 1 AS one"
    return f"SELECT * FROM {data['archives'][0]['table']} LIMIT 100"


def _cell(column: str, value: Any, links: dict[str, str]) -> str:
    text = escape(_text(value))
    if column in links and value is not None:
        return f'<td><a href="{escape(links[column])}{escape(str(value))}">{text}</a></td>'
    return f"<td>{text}</td>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
