#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an S3 server, for the S3 fault tests.

    s3_fault_proxy.py --listen PORT --upstream http://127.0.0.1:UPSTREAM --seed N \
        [--error-rate R] [--slow-rate R] [--slow-seconds S] [--drop-rate R] [--cut-rate R]

Every request goes to the upstream server unchanged (the Host header too, so SigV4
signatures made for the proxy's address still verify). With the given probabilities,
chosen by a seeded generator:
  --error-rate: answer 500 InternalError or 503 SlowDown instead, without forwarding;
  --slow-rate:  wait up to --slow-seconds before forwarding;
  --drop-rate:  forward, then close the connection without replying (the request took
                effect, its reply is lost);
  --cut-rate:   for a PUT with a body, forward its headers only, then close both
                connections without replying (an upload cut off before its body:
                SeaweedFS keeps an empty object for it).
It prints "listening PORT" once ready and, on SIGTERM, one line of counts. Loopback only.
"""

import argparse
import http.client
import random
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--cut-rate", type=float, default=0.0)
    args = parser.parse_args()
    upstream = urllib.parse.urlparse(args.upstream)
    if upstream.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the upstream must be on the loopback")
    generator = random.Random(args.seed)
    lock = threading.Lock()
    counts = {"requests": 0, "puts": 0, "errors": 0, "slow": 0, "dropped": 0, "cut": 0, "upstream_failures": 0}

    def draw():
        with lock:
            return generator.random(), generator.random(), generator.random(), generator.random(), generator.random()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            error, slow, drop, pick, cut = draw()
            with lock:
                counts["requests"] += 1
                if self.command == "PUT" and body:
                    counts["puts"] += 1
            if error < args.error_rate:
                with lock:
                    counts["errors"] += 1
                if pick < 0.5:
                    self.reply(500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")
                else:
                    self.reply(503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
                return
            if slow < args.slow_rate:
                with lock:
                    counts["slow"] += 1
                time.sleep(pick * args.slow_seconds)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if self.command == "PUT" and body and cut < args.cut_rate:
                with lock:
                    counts["cut"] += 1
                try:
                    connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
                    connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers.items():
                        connection.putheader(k, v)
                    connection.endheaders()
                    # Long enough for the server to be waiting on the body.
                    time.sleep(0.2)
                    connection.close()
                except OSError:
                    with lock:
                        counts["upstream_failures"] += 1
                self.close_connection = True
                return
            try:
                connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                status = response.status
                reply_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
                connection.close()
            except OSError:
                with lock:
                    counts["upstream_failures"] += 1
                self.reply(502, b"<Error><Code>BadGateway</Code><Message>upstream unreachable</Message></Error>")
                return
            if drop < args.drop_rate:
                with lock:
                    counts["dropped"] += 1
                self.close_connection = True
                return
            self.send_response(status)
            for k, v in reply_headers:
                self.send_header(k, v)
            # A HEAD's reply has no body, but its Content-Length is the object's size.
            upstream_length = response.getheader("Content-Length")
            self.send_header("Content-Length", upstream_length if self.command == "HEAD" and upstream_length else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", args.listen), Handler)
    server.daemon_threads = True

    def stop(*_):
        print("counts " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"listening {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
