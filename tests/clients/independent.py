#!/usr/bin/env python3
"""Drive `wsctl dev` with clients we did not write: Python `websockets` and boto3's
`apigatewaymanagementapi` client.

Run by `tests/independent_clients.rs` (so `cargo test` covers it); by hand:

    python3 tests/clients/independent.py --url ws://127.0.0.1:P/local --key wsk_... \
        --management http://127.0.0.1:P/local --admin http://127.0.0.1:P --state-dir DIR

What it checks, in order (exit status 0 only if all hold):

- a subscriber connects with the key in the `apiKey` query parameter, a publisher with
  the `x-api-key` header;
- boto3 GetConnection reads connectedAt, lastActiveAt and identity (sourceIp, userAgent);
- the subscriber holds its connection 20 s and receives every publish, made before and
  after the 15 s mark, with consecutive seqs; pings get pongs throughout;
- after the hold, GetConnection still answers, with the same connectedAt and a
  lastActiveAt that moved with the traffic; boto3 PostToConnection delivers exact bytes;
- GoneException (boto3's typed exception) for an id the gateway never issued;
- unsubscribe stops deliveries; a client close gets the server's 1000 in answer, and
  the closed connection is then gone at the management API.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timezone

try:
    import boto3
    import botocore.config
    from websockets.asyncio.client import connect
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(
        f"missing Python package ({e}); install the independent clients with: "
        "python3 -m pip install 'websockets>=13' boto3"
    )

HOLD_S = 20.0
MARK_S = 15.0
PUBLISH_EVERY_S = 2.5
AGENT = f"independent-py/1.0 (websockets; pid {os.getpid()})"
ROOM = f"tvl:protocol:independent{os.getpid()}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def recv_json(ws, timeout=10.0):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    check(isinstance(raw, str), f"expected a text frame, got {raw!r}")
    return json.loads(raw)


async def request(ws, frame, expect_type):
    await ws.send(json.dumps(frame))
    reply = await recv_json(ws)
    check(reply.get("type") == expect_type, f"{frame} -> expected {expect_type}, got {reply}")
    return reply


def connection_id(args):
    """The subscriber's connection id, from `/@admin` (by its user agent)."""
    with open(os.path.join(args.state_dir, "admin-token"), encoding="utf-8") as f:
        token = f.read().strip()
    req = urllib.request.Request(
        f"{args.admin}/@admin",
        data=json.dumps({"op": "list_connections", "limit": 100}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        reply = json.load(resp)
    ids = [c["record"]["connectionId"] for c in reply["page"]["items"] if c["record"]["userAgent"] == AGENT]
    check(len(ids) == 1, f"connections with user agent {AGENT!r}: {reply}")
    return ids[0]


def management_client(endpoint):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"max_attempts": 1}, proxies={}),
    )


def get_connection(mgmt, cid, connected_window):
    """GetConnection through boto3; checks every field and returns (connectedAt, lastActiveAt)."""
    out = mgmt.get_connection(ConnectionId=cid)
    now = datetime.now(timezone.utc)
    connected_at, last_active_at = out["ConnectedAt"], out["LastActiveAt"]
    for name, value in (("connectedAt", connected_at), ("lastActiveAt", last_active_at)):
        check(isinstance(value, datetime) and value.tzinfo is not None, f"{name} is not a timestamp: {value!r}")
    lo, hi = connected_window
    check(
        lo.timestamp() - 1 <= connected_at.timestamp() <= hi.timestamp() + 1,
        f"connectedAt {connected_at} outside the connect window {lo}..{hi}",
    )
    check(
        connected_at <= last_active_at and last_active_at.timestamp() <= now.timestamp() + 1,
        f"lastActiveAt {last_active_at} not between connectedAt {connected_at} and now {now}",
    )
    identity = out["Identity"]
    check(identity["SourceIp"] == "127.0.0.1", f"identity.sourceIp: {identity}")
    check(identity["UserAgent"] == AGENT, f"identity.userAgent: {identity} (sent {AGENT!r})")
    return connected_at, last_active_at


def expect_gone(mgmt, cid, what):
    try:
        mgmt.get_connection(ConnectionId=cid)
    except mgmt.exceptions.GoneException:
        pass
    else:
        raise AssertionError(f"GetConnection of {what} ({cid}) did not raise GoneException")
    try:
        mgmt.post_to_connection(ConnectionId=cid, Data=b"{}")
    except mgmt.exceptions.GoneException:
        pass
    else:
        raise AssertionError(f"PostToConnection to {what} ({cid}) did not raise GoneException")


async def main(args):
    mgmt = management_client(args.management)
    # No proxy: everything is on loopback.
    before = datetime.now(timezone.utc)
    sub = await connect(f"{args.url}?apiKey={args.key}", user_agent_header=AGENT, proxy=None)
    window = (before, datetime.now(timezone.utc))
    started = time.monotonic()
    pub = await connect(args.url, additional_headers={"x-api-key": args.key}, proxy=None)

    reply = await request(sub, {"action": "subscribe", "room": ROOM}, "subscribed")
    check(reply["seq"] == 0 and reply["latest"] is None, f"fresh room: {reply}")
    cid = connection_id(args)
    connected_at, first_active = get_connection(mgmt, cid, window)

    # Hold 20 s: publish every 2.5 s; the subscriber gets each one in seq order and pings.
    seq, before_mark, after_mark = 0, 0, 0
    while time.monotonic() - started < HOLD_S:
        await asyncio.sleep(PUBLISH_EVERY_S)
        seq += 1
        elapsed = time.monotonic() - started
        published = await request(pub, {"action": "publish", "room": ROOM, "data": {"n": seq}}, "published")
        check(published["seq"] == seq, f"publish {seq}: {published}")
        msg = await recv_json(sub)
        check(msg["type"] == "message" and msg["room"] == ROOM, f"at {elapsed:.1f}s: {msg}")
        check(msg["seq"] == seq and msg["data"] == {"n": seq}, f"at {elapsed:.1f}s expected seq {seq}: {msg}")
        await request(sub, {"action": "ping", "id": seq}, "pong")
        if elapsed < MARK_S:
            before_mark += 1
        else:
            after_mark += 1
    check(before_mark >= 2 and after_mark >= 2, f"publishes before/after 15 s: {before_mark}/{after_mark}")

    # The management API still knows the connection, and its activity moved on.
    again, last_active = get_connection(mgmt, cid, window)
    check(again == connected_at, f"connectedAt changed: {connected_at} -> {again}")
    check(
        (datetime.now(timezone.utc) - connected_at).total_seconds() >= MARK_S,
        "the connection is older than 15 s when read",
    )
    check(
        (last_active - first_active).total_seconds() >= MARK_S - 3,
        f"lastActiveAt did not follow the traffic: {first_active} -> {last_active}",
    )
    payload = '{"from":"boto3","text":"h\\u00e9llo \u00e9"}'.encode()
    mgmt.post_to_connection(ConnectionId=cid, Data=payload)
    got = await asyncio.wait_for(sub.recv(), 10)
    check(got == payload.decode(), f"PostToConnection bytes: sent {payload!r}, got {got!r}")
    expect_gone(mgmt, "AAAAAAAAAAAAAAAA", "an id never issued")

    # Unsubscribe: no more deliveries.
    await request(sub, {"action": "unsubscribe", "room": ROOM}, "unsubscribed")
    await request(pub, {"action": "publish", "room": ROOM, "data": {"n": "after"}}, "published")
    try:
        extra = await asyncio.wait_for(sub.recv(), 0.5)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError(f"delivery after unsubscribe: {extra}")

    # A clean close: the server answers with 1000, and the connection is gone.
    await sub.close()
    check(sub.close_code == 1000, f"the server answered the close with {sub.close_code} {sub.close_reason!r}")
    deadline = time.monotonic() + 2
    while True:
        try:
            mgmt.get_connection(ConnectionId=cid)
        except mgmt.exceptions.GoneException:
            break
        check(time.monotonic() < deadline, f"{cid} still answers 2 s after its close")
        await asyncio.sleep(0.05)
    expect_gone(mgmt, cid, "the closed connection")
    await pub.close()
    check(pub.close_code == 1000, f"publisher close answered with {pub.close_code}")
    print(
        f"ok: held {time.monotonic() - started:.1f}s, {seq} publishes "
        f"({before_mark} before / {after_mark} after 15 s), management API fields and errors as modelled"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="WebSocket URL without the key")
    parser.add_argument("--key", required=True, help="API key with subscribe and publish scopes")
    parser.add_argument("--management", required=True, help="management endpoint (…/{stage})")
    parser.add_argument("--admin", required=True, help="gateway base URL serving /@admin")
    parser.add_argument("--state-dir", required=True, help="the gateway's state directory (admin token)")
    try:
        asyncio.run(asyncio.wait_for(main(parser.parse_args()), 90))
    except AssertionError as e:
        sys.exit(f"FAILED: {e}")
