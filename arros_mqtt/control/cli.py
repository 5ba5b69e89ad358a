"""`arros sub ...`: the control protocol from a shell. Readable output, or the reply as JSON.

Exit status: 0 on an ok reply, 1 on an error reply (the code and message on stderr), 3 when the
broker or the service did not answer within `--timeout`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from typing import Any

import orjson

from arros_mqtt.config import BrokerConfig, Config, load_config
from arros_mqtt.control.groupstatus import Share, merged, shares, where

EXIT_ERROR_REPLY = 1
EXIT_NO_REPLY = 3
ACTIONS = ("create", "replace", "drop", "pause", "resume", "list", "describe", "status", "explain")
OPS = {"status": "describe"}  # actions that send another op


def add_sub_command(commands: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="take the broker and the prefix from this config file")
    common.add_argument("--broker", help="broker URL (default: the config's [broker] url, else "
                        "mqtt://127.0.0.1:1883); user:password@ in the URL for an authenticated broker")
    common.add_argument("--prefix", help="control topic prefix (default: the config's, else arros)")
    common.add_argument("--protocol", choices=("5", "3.1.1"), help="MQTT version (default 5; 3.1.1 for the "
                        "embedded broker, chosen by itself with -c and a config without [broker])")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply (default 10)")
    common.add_argument("--json", action="store_true", help="print the reply as JSON")

    sub = commands.add_parser("sub", help="manage SQL subscriptions of a running service over MQTT")
    actions = sub.add_subparsers(dest="action", required=True)
    for action in ("create", "replace"):
        parser = actions.add_parser(action, parents=[common], help=f"{action} a run-time subscription")
        parser.add_argument("name")
        parser.add_argument("--sql", required=True, help="one read-only SELECT over a stream")
        parser.add_argument("--output", help="output topic template, e.g. derived/{machine}")
        parser.add_argument("--format", choices=("json", "msgpack"))
        parser.add_argument("--qos", type=int, choices=(0, 1, 2))
        parser.add_argument("--retain", action="store_true", default=None)
        parser.add_argument("--batch", action="store_true", default=None, help="one message per micro-batch")
        parser.add_argument("--timestamps", choices=("rfc3339", "epoch_ms"))
        parser.add_argument("--archive", action="store_true", default=None)
        parser.add_argument("--late-output", dest="late_output", help="topic template for late rows")
    for action, text in (("drop", "drop a run-time subscription"), ("pause", "stop running a subscription"),
                         ("resume", "run a paused subscription again"), ("describe", "definition and status"),
                         ("status", "a subscription's counters; in a group merged and per member")):
        actions.add_parser(action, parents=[common], help=text).add_argument("name")
    listing = actions.add_parser("list", parents=[common], help="every live subscription")
    listing.add_argument("--members", action="store_true",
                         help="in a group: one row per subscription and member instead of one per subscription")
    explain = actions.add_parser("explain", parents=[common], help="how a subscription or a query would run")
    explain.add_argument("name", nargs="?")
    explain.add_argument("--sql", help="explain this query instead of a subscription")
    sub.set_defaults(handler=run_sub)


def run_sub(args: argparse.Namespace) -> int:
    from arros_mqtt.control.client import ControlClient, NoReply

    if not args.verbose:
        logging.getLogger("arros_mqtt").setLevel(logging.WARNING)
    broker, prefix = _target(args)
    body = _request(args)
    try:
        answers = ControlClient(broker, prefix, args.timeout).request_all(body, statuses=args.action in
                                                                          ("list", "status"))
    except NoReply as exc:
        print(f"arros: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    if answers.replies[0].get("member") is not None:
        return _print_group(args.action, answers, args.json, getattr(args, "members", False))
    reply = answers.replies[0]
    if args.json:
        print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())
    if not reply.get("ok"):
        error = reply.get("error") or {}
        print(f"arros: error: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    if not args.json:
        result = reply.get("result")
        print(render_status(result["status"]) if args.action == "status" else render(args.action, result))
    return 0


def _print_group(action: str, answers: Any, as_json: bool, members: bool = False) -> int:
    """A group's replies: one per member; `list` and `status` merged over the members (their last retained
    statuses for members gone or not answering, groupstatus.py), `list --members` one row per subscription and
    member; error if any member refused or did not answer."""
    replies = sorted(answers.replies, key=lambda r: str(r.get("member")))
    ok = [r for r in replies if r.get("ok")]
    found = _shares(action, ok, answers) if action in ("list", "status") else []
    if as_json:
        document: dict[str, Any] = {"replies": replies, "missing": answers.missing, "offline": answers.offline}
        if found:
            document["merged"] = merged(found)
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    failed = [r for r in replies if not r.get("ok")]
    for reply in failed:
        error = reply.get("error") or {}
        print(f"arros: error: member {reply['member']}: {error.get('code')}: {error.get('message')}", file=sys.stderr)
    for member in answers.missing:
        print(f"arros: error: member {member} did not answer", file=sys.stderr)
    if not as_json and ok:
        if action == "list":
            print(_member_table(found) if members else _merged_table(merged(found)))
        elif action == "status":
            print(render_status(merged(found)[0]) if found else "")
            print(_member_table(found, status=True))
        else:
            print(render(action, ok[0]["result"]))
            print(f"members: {', '.join(str(r['member']) for r in ok)}")
    return EXIT_ERROR_REPLY if failed or answers.missing else 0


def _shares(action: str, ok: list[dict[str, Any]], answers: Any) -> list[Share]:
    if action == "list":
        answered = {str(r["member"]): r["result"]["subscriptions"] for r in ok}
    else:  # `status`: a `describe` reply per member
        answered = {str(r["member"]): [{**r["result"]["status"], **{key: r["result"].get(key) for key in
                                                                     ("origin", "kind", "output")},
                                        "stream": r["result"]["stream"]["name"]}] for r in ok}
    return shares(answered, answers.statuses, set(answers.offline), set(answers.missing))


def _merged_table(statuses: list[dict[str, Any]]) -> str:
    rows = [(s["name"], str(s.get("origin")), str(s.get("kind")), str(s.get("stream")), s.get("output") or "-",
             s["state"], str(len(s["members"])), where(s), str(s.get("rows_in", "-")), str(s.get("rows_out", "-")))
            for s in statuses]
    return _table(("NAME", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "MEMBERS", "WHERE", "ROWS_IN",
                   "ROWS_OUT"), rows)


def _member_table(found: list[Share], status: bool = False) -> str:
    if status:
        rows = [(share.member, share.state, *(str(share.status.get(k, "-")) for k in
                                              ("rows_in", "rows_out", "errors", "late_rows")),
                 str(share.status.get("at") or "-")) for share in found]
        return _table(("MEMBER", "STATE", "ROWS_IN", "ROWS_OUT", "ERRORS", "LATE_ROWS", "AT"), rows)
    rows = [(share.name, share.member, str(share.status.get("origin")), str(share.status.get("kind")),
             str(share.status.get("stream", "-")), share.status.get("output") or "-", share.state,
             str(share.status.get("rows_in", "-")), str(share.status.get("rows_out", "-"))) for share in found]
    return _table(("NAME", "MEMBER", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "ROWS_IN", "ROWS_OUT"), rows)


def render_status(status: dict[str, Any]) -> str:
    """A status (one member's, or a group's merged one) as `key: value` lines."""
    lines = []
    for key, value in status.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        lines.append(f"{key + ':':<20} {'-' if value is None else value}")
    return "\n".join(lines)


def _target(args: argparse.Namespace) -> tuple[BrokerConfig, str]:
    config = load_config(args.config) if args.config else Config()
    broker = config.with_broker_url(args.broker).broker if args.broker else config.broker
    if broker is None and args.config:  # an embedded-mode config: its own broker, MQTT 3.1.1
        host, _, port = config.embedded.listen.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        broker = BrokerConfig(url=f"mqtt://{host}:{port}", protocol="3.1.1")
    broker = broker or BrokerConfig()
    if args.protocol:
        broker = replace(broker, protocol=args.protocol)
    return broker, args.prefix or config.control.prefix


def _request(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"op": OPS.get(args.action, args.action)}
    if getattr(args, "name", None) is not None:
        body["name"] = args.name
    if args.action in ("create", "replace"):
        for key in ("sql", "output", "format", "qos", "retain", "batch", "timestamps", "archive", "late_output"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
    elif args.action == "explain" and args.sql is not None:
        body["sql"] = args.sql
    return body


def render(action: str, result: Any) -> str:
    """A reply's result as text for a terminal."""
    if action == "list":
        rows = [(s["name"], s["origin"], s["kind"], s["stream"], s["output"] or "-",
                 "paused" if s["paused"] else "running", str(s.get("rows_in", "-")), str(s["rows_out"]))
                for s in result["subscriptions"]]
        return _table(("NAME", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "ROWS_IN", "ROWS_OUT"), rows)
    if action == "drop":
        return f"dropped {result['name']}"
    if action in ("pause", "resume"):
        state = f"paused ({result['paused_reason']})" if result["paused"] else "running"
        return f"{result['name']}: {state}"
    lines = []
    for key, value in result.items():
        if key in ("logical_plan", "physical_plan", "status"):
            continue
        if key == "columns":
            value = ", ".join(f"{c['name']} {c['type']}" for c in value)
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        lines.append(f"{key + ':':<12} {'-' if value is None else value}")
    if "status" in result:
        lines.append("status:")
        lines += [f"  {key + ':':<14} {'-' if value is None else value}" for key, value in result["status"].items()]
    for key in ("logical_plan", "physical_plan"):
        if key in result:
            lines.append(f"{key.replace('_', ' ')}:")
            lines += [f"  {line}" for line in result[key].rstrip().splitlines()]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])
