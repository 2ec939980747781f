#!/usr/bin/env python3
"""Hostile and careless clients against a local `wsctl dev`, N sockets of each kind, for a
bounded time, on loopback only. Used by scripts/chaos.sh while `wsctl bench mixed` measures
what normal clients get; prints one JSON line of counts when done.

Kinds (each keeps N sockets going, replacing any the gateway closes):
  slowloris   sends the upgrade request one byte a second
  silent      opens TCP and sends nothing
  stalled     a valid subscriber that never reads again, replaced every 30 s; one more
              connection publishes 8 KB messages into its room at 50/s, so its socket
              and outbound queue fill up
  keyless     connects without a key, over and over (401, then 429)
  badkey      connects with a key that does not exist, over and over (403, then 429)
  malformed   a valid client that sends a text frame that is not UTF-8 (1007)
  oversized   a valid client that sends a 200 KB message (1009)

Standard library only.
"""
import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import time

STALLED_ROOM = "chaos:stalled"

HEAD = (
    "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {nonce}\r\n\r\n"
)


def head(host, path):
    return HEAD.format(host=host, path=path, nonce=base64.b64encode(os.urandom(16)).decode()).encode()


def frame(payload: bytes, opcode=0x1) -> bytes:
    """A masked client frame (FIN set)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Chaos:
    def __init__(self, args):
        self.host, self.port = args.host, args.port
        self.stage, self.key = args.stage, args.key
        self.deadline = time.monotonic() + args.seconds
        self.counts = {}
        kinds = ["slowloris", "silent", "stalled", "keyless", "badkey", "malformed", "oversized", "publisher"]
        base = args.source_base
        self.sources = {k: f"127.0.0.{base + i}" for i, k in enumerate(kinds)}
        self.sources["default"] = f"127.0.0.{base}"

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def alive(self):
        return time.monotonic() < self.deadline

    async def open(self, small_rcvbuf=False):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        kind = asyncio.current_task().get_name()
        # Each kind comes from its own loopback address, as attackers have their own.
        sock.bind((self.sources.get(kind, self.sources["default"]), 0))
        if small_rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        return await asyncio.open_connection(sock=sock)

    async def upgrade(self, key, small_rcvbuf=False):
        reader, writer = await self.open(small_rcvbuf)
        path = f"/{self.stage}" + (f"?apiKey={key}" if key is not None else "")
        writer.write(head(f"{self.host}:{self.port}", path))
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 10)).decode(errors="replace")
        while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            pass
        return reader, writer, status

    async def until_closed(self, reader, limit):
        """Reads (and discards) until the server closes or `limit` seconds pass."""
        end = min(self.deadline, time.monotonic() + limit)
        while time.monotonic() < end:
            try:
                data = await asyncio.wait_for(reader.read(65536), max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                return False
            if not data:
                return True
        return False

    async def slowloris(self):
        while self.alive():
            try:
                _, writer = await self.open()
                for b in head(f"{self.host}:{self.port}", f"/{self.stage}?apiKey={self.key}"):
                    if not self.alive():
                        break
                    writer.write(bytes([b]))
                    await writer.drain()
                    await asyncio.sleep(1)
                else:
                    self.count("slowloris_completed")
            except (ConnectionError, OSError):
                self.count("slowloris_dropped")
            await asyncio.sleep(0.1)

    async def silent(self):
        while self.alive():
            try:
                reader, writer = await self.open()
                if await self.until_closed(reader, 3600):
                    self.count("silent_dropped")
                writer.close()
            except (ConnectionError, OSError):
                self.count("silent_refused")
                await asyncio.sleep(0.5)

    async def publisher(self):
        """Publishes 8 KB messages into the stalled subscribers' room at 50/s (within the
        per-connection rate limit), reading its replies, so their queues fill up."""
        pad = "x" * 8192
        msg = frame(json.dumps({"action": "publish", "room": STALLED_ROOM, "data": {"pad": pad}}).encode())
        while self.alive():
            try:
                reader, writer, status = await self.upgrade(self.key)
                if " 101 " not in status:
                    self.count("publisher_refused")
                    writer.close()
                    await asyncio.sleep(1)
                    continue
                drain = asyncio.create_task(self.until_closed(reader, 3600))
                while self.alive() and not drain.done():
                    writer.write(msg)
                    await writer.drain()
                    self.count("publishes")
                    await asyncio.sleep(0.02)
                drain.cancel()
                writer.close()
            except (ConnectionError, OSError, asyncio.TimeoutError):
                self.count("publisher_error")
                await asyncio.sleep(0.5)

    async def stalled(self, i):
        room = STALLED_ROOM
        while self.alive():
            try:
                reader, writer, status = await self.upgrade(self.key, small_rcvbuf=True)
                if " 101 " not in status:
                    self.count("stalled_refused")
                    writer.close()
                    await asyncio.sleep(1)
                    continue
                writer.write(frame(json.dumps({"action": "subscribe", "room": room}).encode()))
                await writer.drain()
                # Never read again: the gateway must evict us (4008) on its own. Start over
                # every 30 s to keep the pressure on.
                await asyncio.sleep(min(30, max(0, self.deadline - time.monotonic())))
                self.count("stalled_cycles")
                writer.close()
            except (ConnectionError, OSError, asyncio.TimeoutError):
                self.count("stalled_dropped")
                await asyncio.sleep(0.5)

    async def refused(self, kind, key):
        while self.alive():
            try:
                _, writer, status = await self.upgrade(key)
                code = status.split(" ")[1] if " " in status else "?"
                self.count(f"{kind}_{code}")
                writer.close()
            except (ConnectionError, OSError, asyncio.TimeoutError, IndexError):
                self.count(f"{kind}_error")
            await asyncio.sleep(0.05)

    async def bad_frames(self, kind, payload, opcode):
        # Masked once: masking 200 KB in Python per send would starve the event loop.
        data = frame(payload, opcode)
        while self.alive():
            try:
                reader, writer, status = await self.upgrade(self.key)
                if " 101 " not in status:
                    self.count(f"{kind}_refused")
                    writer.close()
                    await asyncio.sleep(1)
                    continue
                writer.write(data)
                await writer.drain()
                reply = await asyncio.wait_for(reader.read(256), 10)
                code = struct.unpack("!H", reply[2:4])[0] if len(reply) >= 4 and reply[0] & 0x0F == 0x8 else None
                self.count(f"{kind}_close_{code}")
                writer.close()
            except (ConnectionError, OSError, asyncio.TimeoutError):
                self.count(f"{kind}_error")
            await asyncio.sleep(0.5)

    async def run(self, n):
        tasks = []
        for i in range(n):
            for name, coro in [
                ("slowloris", self.slowloris()),
                ("silent", self.silent()),
                ("stalled", self.stalled(i)),
                ("keyless", self.refused("keyless", None)),
                ("badkey", self.refused("badkey", "wsk_" + "A" * 43)),
                ("malformed", self.bad_frames("malformed", b"\xff\xfe\xfd", 0x1)),
                ("oversized", self.bad_frames("oversized", b"x" * 200_000, 0x1)),
            ]:
                tasks.append(asyncio.create_task(coro, name=name))
        tasks.append(asyncio.create_task(self.publisher(), name="publisher"))
        await asyncio.gather(*tasks, return_exceptions=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stage", default="local")
    p.add_argument("--key", required=True, help="a valid key (the stalled, malformed and oversized clients use it)")
    p.add_argument("--per-kind", type=int, default=100, help="sockets of each kind")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--source-base", type=int, default=50, help="kinds connect from 127.0.0.B, B+1, ...")
    args = p.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        raise SystemExit("chaos.py only targets loopback")
    chaos = Chaos(args)
    try:
        asyncio.run(asyncio.wait_for(chaos.run(args.per_kind), args.seconds + 30))
    except asyncio.TimeoutError:
        pass
    print(json.dumps({"perKind": args.per_kind, "seconds": args.seconds, "counts": chaos.counts}, sort_keys=True))


if __name__ == "__main__":
    main()
