"""A switchable fault proxy in front of an HTTP server (the S3 server of tests/delivery_s3.rs).

    fault_proxy.py --upstream 127.0.0.1:PORT

Listens on a free port of 127.0.0.1 and prints `ready <port>`. Then reads one command a line on
stdin and answers `ok <command>` once it is in force (new connections see it; an open
keep-alive connection is closed at the switch so the client reconnects):
  pass      forward bytes both ways
  refuse    close the listening socket: connections are refused
  403|404|500
            answer every request with that status and S3's XML error (AccessDenied,
            NoSuchBucket, InternalError), without forwarding it
  slow S    forward, but hold each request S seconds first
  count     answer `ok count N`: N requests answered with an error status so far
Exits when stdin closes (so it dies with the test process).
"""

import argparse
import asyncio
import sys

ERRORS = {
    "403": ("403 Forbidden", "AccessDenied", "Access Denied"),
    "404": ("404 Not Found", "NoSuchBucket", "The specified bucket does not exist"),
    "500": ("500 Internal Server Error", "InternalError", "We encountered an internal error."),
}


class Proxy:
    def __init__(self, upstream):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.mode = "pass"
        self.slow = 0.0
        self.server = None
        self.port = 0
        self.conns = set()
        self.errors_sent = 0

    async def listen(self):
        self.server = await asyncio.start_server(
            self.handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        self.conns.add(writer)
        try:
            if self.mode in ERRORS:
                await self.answer_error(reader, writer, ERRORS[self.mode])
                return
            if self.slow:
                await asyncio.sleep(self.slow)
            up_r, up_w = await asyncio.open_connection(*self.upstream)
            self.conns.add(up_w)
            await asyncio.gather(self.pipe(reader, up_w), self.pipe(up_r, writer))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.conns.discard(writer)

    async def pipe(self, r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()
            self.conns.discard(w)

    async def answer_error(self, reader, writer, err):
        status, code, message = err
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                "<RequestId>fault-proxy</RequestId></Error>"
            ).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nx-amz-request-id: fault-proxy\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            self.errors_sent += 1

    async def switch(self, cmd):
        parts = cmd.split()
        mode = parts[0]
        if mode == "refuse":
            if self.server:
                self.server.close()
                self.server = None
        elif self.server is None:
            await self.listen()
        self.mode = mode
        self.slow = float(parts[1]) if mode == "slow" else 0.0
        for w in list(self.conns):
            w.close()
        self.conns.clear()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    args = p.parse_args()
    proxy = Proxy(args.upstream)
    await proxy.listen()
    print(f"ready {proxy.port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        if line == "count":
            print(f"ok count {proxy.errors_sent}", flush=True)
            continue
        await proxy.switch(line)
        print(f"ok {line}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
