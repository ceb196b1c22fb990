"""Interop checks with third-party clients: websockets and httpx-sse.

Usage: interop.py PORT. Prints one line per check and exits non-zero on the
first failure.
"""
import asyncio
import json
import os
import sys
import threading
import time

import httpx
import websockets
from httpx_sse import connect_sse

PORT = int(sys.argv[1])
HTTP = "http://127.0.0.1:%d" % PORT
WS = "ws://127.0.0.1:%d" % PORT


def check(condition, what):
    if not condition:
        print("FAIL: " + what)
        sys.exit(1)
    print("ok: " + what)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def websocket_checks():
    # The chat: two clients, one on /ws and one on / (the original demo's URL).
    async with websockets.connect(WS + "/ws") as ann, websockets.connect(WS + "/") as bob:
        welcome_ann, welcome_bob = await recv_json(ann), await recv_json(bob)
        check(welcome_ann["type"] == "welcome" and isinstance(welcome_ann["clientId"], int), "websockets: welcome on /ws")
        check(welcome_bob["type"] == "welcome", "websockets: welcome on /")
        await ann.send(json.dumps({"type": "chat", "message": "hello from ann", "username": "ann"}))
        for name, ws in (("ann", ann), ("bob", bob)):
            got = await recv_json(ws)
            check(got["type"] == "chat" and got["message"] == "hello from ann" and got["username"] == "ann"
                  and got["clientId"] == welcome_ann["clientId"] and got["timestamp"].endswith("Z"),
                  "websockets: %s receives ann's chat message" % name)
        await bob.send("this is not JSON")
        got = await recv_json(bob)
        check(got["type"] == "error" and "Invalid JSON" in got["message"], "websockets: bad JSON gets an error message")
        await bob.send(json.dumps({"type": "chat", "message": "still here", "username": "bob"}))
        got_ann, got_bob = await recv_json(ann), await recv_json(bob)
        check(got_ann["message"] == got_bob["message"] == "still here",
              "websockets: the connection stays open after an error")
        # A triggered event reaches WebSocket clients.
        response = httpx.post(HTTP + "/trigger-event", json={"message": "from curl"}, timeout=10)
        check(response.status_code == 200, "httpx: POST /trigger-event answers 200")
        got = await recv_json(bob)
        check(got["type"] == "notification" and got["message"] == "from curl", "websockets: a triggered event arrives")
        # websockets pings by itself every 20 s; ask for one now.
        latency = await asyncio.wait_for(await ann.ping(b"interop"), 10)
        check(latency >= 0, "websockets: our pong answers its ping")

    # The echo endpoint, with a 1 MiB binary message and some text.
    async with websockets.connect(WS + "/echo", max_size=None) as echo:
        data = os.urandom(1 << 20)
        await echo.send(data)
        check(await asyncio.wait_for(echo.recv(), 20) == data, "websockets: 1 MiB binary echoed unchanged")
        text = "héllo wörld \U0001F600 " * 1000
        await echo.send(text)
        check(await asyncio.wait_for(echo.recv(), 10) == text, "websockets: UTF-8 text echoed unchanged")
        await echo.send([b"frag", b"mented"])  # an iterable is sent as fragments
        check(await asyncio.wait_for(echo.recv(), 10) == b"fragmented", "websockets: a fragmented message reassembled")
    check(echo.close_code == 1000, "websockets: clean close with 1000 (got %s)" % echo.close_code)

    # A refused handshake is a clear HTTP error, not a hang.
    try:
        async with websockets.connect(WS + "/nope"):
            pass
        check(False, "websockets: /nope should not upgrade")
    except websockets.exceptions.InvalidStatus as e:
        check(e.response.status_code in (404, 426), "websockets: a non-WebSocket path is refused (%d)" % e.response.status_code)


def sse_checks():
    with httpx.Client(timeout=10) as client:
        events = []
        with connect_sse(client, "GET", HTTP + "/events") as source:
            check(source.response.headers["content-type"].startswith("text/event-stream"), "httpx-sse: content type")
            stream = source.iter_sse()
            welcome = next(stream)
            check(json.loads(welcome.data)["type"] == "welcome", "httpx-sse: welcome first")
            check(json.loads(next(stream).data)["type"] == "initial_data", "httpx-sse: initial_data second")
            last_id = None
            for i in range(3):
                httpx.post(HTTP + "/trigger-event", json={"message": "sse %d" % i, "event": "alert"})
                event = next(stream)
                check(event.event == "alert" and json.loads(event.data)["message"] == "sse %d" % i,
                      "httpx-sse: named event %d arrives" % i)
                last_id = event.id
        # Resume: events posted while disconnected arrive on reconnect.
        posted = [httpx.post(HTTP + "/trigger-event", json={"message": "missed %d" % i}).json()["id"] for i in range(5)]
        with connect_sse(client, "GET", HTTP + "/events", headers={"Last-Event-ID": last_id}) as source:
            stream = source.iter_sse()
            next(stream), next(stream)  # welcome, initial_data
            replayed = [next(stream) for _ in posted]
            check([int(e.id) for e in replayed] == posted, "httpx-sse: Last-Event-ID replays exactly the missed events")


asyncio.run(websocket_checks())
sse_checks()
print("interop: all checks passed")
