#!/usr/bin/env python3
"""A TCP relay that adds a fixed latency to every request (for scripts/bench.sh).

    python3 scripts/latency_proxy.py --listen 127.0.0.1:15099 --target 127.0.0.1:15000 --delay-ms 25

It accepts TCP connections on --listen, opens one connection to --target for each, and
copies bytes both ways, unchanged and in order. It knows nothing about HTTP; it only watches
the direction of the traffic on each connection:

  * The first bytes from the client on a new connection, and the first bytes from the client
    after the server has sent something back, start a new request. That first chunk is held
    for --delay-ms before it is forwarded.
  * Everything else the client sends before the next response bytes (the rest of the request
    headers, a request body arriving in many TCP segments) is forwarded at once, so a request
    is delayed once, not once per segment.
  * The response direction is never delayed.

So on a keep-alive HTTP/1.1 connection (no pipelining) each request costs exactly one
--delay-ms more, which is what an S3 endpoint some distance away looks like to a client that
fetches many small objects. Requests that wait for an interim response (`Expect:
100-continue`) are delayed twice: once for the headers, once for the body after the `100`.

It prints "listening on HOST:PORT" to stderr once it accepts connections, and runs until it
is killed (SIGINT or SIGTERM); then it prints how many connections and requests it relayed.
Standard library only; Python 3.11+.
"""

import argparse
import asyncio
import signal
import sys

CHUNK = 64 * 1024
STATS = {"connections": 0, "requests": 0}


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class Relay:
    """One client connection and its connection to the target."""

    def __init__(self, delay: float, client_r, client_w, server_r, server_w):
        self.delay = delay
        self.client_r, self.client_w = client_r, client_w
        self.server_r, self.server_w = server_r, server_w
        # True when the next client bytes begin a new request: at the start, and after every
        # chunk of response bytes sent back.
        self.new_request = True

    async def upstream(self) -> None:
        """Client -> server: the first chunk of each request waits `delay`."""
        while data := await self.client_r.read(CHUNK):
            if self.new_request:
                self.new_request = False
                STATS["requests"] += 1
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
            self.server_w.write(data)
            await self.server_w.drain()
        half_close(self.server_w)

    async def downstream(self) -> None:
        """Server -> client: never delayed; any response bytes end the current request."""
        while data := await self.server_r.read(CHUNK):
            self.client_w.write(data)
            await self.client_w.drain()
            self.new_request = True
        half_close(self.client_w)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.upstream()), asyncio.create_task(self.downstream())]
        try:
            # Both directions end normally on EOF (each half-closes the other side). An error
            # in either one (a reset, a broken pipe) ends the whole connection.
            for done in asyncio.as_completed(tasks):
                try:
                    await done
                except (ConnectionError, OSError):
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (self.client_w, self.server_w):
                close(w)

    def abort(self) -> None:
        """Drops both connections at once (at shutdown); `run` then returns."""
        for w in (self.client_w, self.server_w):
            w.transport.abort()


def half_close(writer: asyncio.StreamWriter) -> None:
    try:
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except (ConnectionError, OSError):
        pass


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    relays: set[Relay] = set()

    async def on_client(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError as e:
            print(f"latency_proxy: cannot connect to {target[0]}:{target[1]}: {e}", file=sys.stderr)
            close(client_w)
            return
        STATS["connections"] += 1
        relay = Relay(delay, client_r, client_w, server_r, server_w)
        relays.add(relay)
        try:
            await relay.run()
        finally:
            relays.discard(relay)

    server = await asyncio.start_server(on_client, *listen, reuse_address=True)
    addrs = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
    print(f"listening on {addrs} -> {target[0]}:{target[1]}, {delay * 1000:g} ms per request",
          file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Not `async with server`: from 3.12 on, leaving it waits for every open (keep-alive)
    # connection to close. Drop them instead, and give the relays a moment to end.
    server.close()
    for relay in list(relays):
        relay.abort()
    for _ in range(100):
        if not relays:
            break
        await asyncio.sleep(0.01)
    print(f"latency_proxy: {STATS['connections']} connections, {STATS['requests']} requests delayed",
          file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=host_port, required=True, help="HOST:PORT to accept on")
    p.add_argument("--target", type=host_port, required=True, help="HOST:PORT to relay to")
    p.add_argument("--delay-ms", type=float, default=25.0, help="added to each request (default 25)")
    a = p.parse_args()
    if a.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    asyncio.run(serve(a.listen, a.target, a.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
