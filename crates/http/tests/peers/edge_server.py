#!/usr/bin/env python3
"""HTTP peer for tests/http_client.rs: Python's http.server plus the edge cases a client must
survive (trailers, close-delimited and truncated bodies, stalls, 1xx, huge heads, connections
closed between keep-alive requests, redirects, gzip/deflate, cookies) and a tiny HTTP proxy
(absolute-form requests and CONNECT tunnels).

Prints "PORTS <main> <second> <proxy>" once listening (the second port serves the same handler:
another origin for cross-origin redirects), and exits when its stdin closes, so it never outlives
the test process.
"""

import gzip
import json
import os
import select
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
COUNTS = {}  # token -> {"connections": n, "requests": n, "dropped": n}
PROXY_LOG = []  # request lines and Proxy-Authorization values seen by the proxy


def count(token, key, n=1):
    if not token:
        return
    with LOCK:
        entry = COUNTS.setdefault(token, {"connections": 0, "requests": 0, "dropped": 0})
        entry[key] += n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edge"
    sys_version = ""

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.served = 0
        self.counted_tokens = set()

    # -- helpers -----------------------------------------------------------------------------

    def query(self):
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", headers=(), content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def handle_expect_100(self):
        if self.path.startswith("/reject-continue"):
            # A final answer without reading the body: the client must not send it.
            self.reply(403, b"no", headers=[("Connection", "close")])
            self.close_connection = True
            return False
        return super().handle_expect_100()

    # -- dispatch ----------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def dispatch(self):
        self.served += 1
        q = self.query()
        path = urlsplit(self.path).path
        token = q.get("token") if path != "/count" else None
        if token and token not in self.counted_tokens:
            self.counted_tokens.add(token)
            count(token, "connections")
        name = "route_" + path.strip("/").split("/")[0].replace("-", "_")
        route = getattr(self, name, None)
        if route is None:
            self.reply(404, b"not found")
            return
        if token:
            count(token, "requests")
        route(q)

    # -- routes ------------------------------------------------------------------------------

    def route_echo(self, q):
        body = self.read_body()
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = headers[key] + ", " + value if key in headers else value
        doc = {
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.decode("latin-1"),
        }
        status = int(q.get("status", 200))
        self.reply(status, json.dumps(doc).encode(), content_type="application/json")

    def route_json(self, q):
        self.reply(200, b'{"name": "green", "n": 3, "list": [1, 2]}', content_type="application/json")

    def route_status(self, q):
        code = int(self.path.split("/")[2].split("?")[0])
        self.reply(code, b"status body")

    def route_no_content(self, q):
        self.reply(204)

    def route_not_modified(self, q):
        # A 304 may carry the Content-Length of the full representation, and no body.
        self.send_response(304)
        self.send_header("Content-Length", "50")
        self.end_headers()

    def route_redirect(self, q):
        self.read_body()
        headers = [("Location", q["to"])]
        if "cookie" in q:
            headers.append(("Set-Cookie", q["cookie"] + "; Path=/"))
        self.reply(int(q.get("status", 302)), b"moved", headers=headers)

    def route_chain(self, q):
        n = int(self.path.split("/")[2].split("?")[0])
        target = "/chain/%d" % (n - 1) if n > 0 else "/echo"
        self.reply(302, b"", headers=[("Location", target)])

    def route_latin1(self, q):
        self.reply(200, b"caf\xe9", content_type="text/plain; charset=ISO-8859-1")

    def route_big(self, q):
        size = int(q["size"])
        data = b"x" * size
        if q.get("chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = 64 * 1024
            for i in range(0, size, step):
                part = data[i : i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.raw(b"0\r\n\r\n")
        else:
            self.reply(200, data)

    # compression

    PLAIN = b"green threads, gevent style. " * 200

    def route_gzip(self, q):
        self.reply(200, gzip.compress(self.PLAIN), headers=[("Content-Encoding", "gzip")])

    def route_deflate(self, q):
        self.reply(200, zlib.compress(self.PLAIN), headers=[("Content-Encoding", "deflate")])

    def route_deflate_raw(self, q):
        c = zlib.compressobj(wbits=-15)
        data = c.compress(self.PLAIN) + c.flush()
        self.reply(200, data, headers=[("Content-Encoding", "deflate")])

    def route_gzip_chunked(self, q):
        data = gzip.compress(self.PLAIN)
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(data), 100):
            part = data[i : i + 100]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.raw(b"0\r\n\r\n")

    def route_bad_gzip(self, q):
        self.reply(200, b"this is not gzip at all", headers=[("Content-Encoding", "gzip")])

    # framing edge cases

    def route_chunked_trailers(self, q):
        self.raw(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
            b"6;ext=1\r\nhello \r\n"
            b"5\r\nworld\r\n"
            b"0\r\nX-Checksum: abc123\r\n\r\n"
        )

    def route_close_delimited(self, q):
        self.raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for i in range(5):
            self.raw(b"part %d;" % i)
            time.sleep(0.01)
        self.close_connection = True

    def route_truncated(self, q):
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        self.close_connection = True

    def route_truncated_chunked(self, q):
        self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        self.close_connection = True

    def route_stall(self, q):
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        self.wait_for_close(5)

    def route_stall_head(self, q):
        self.wait_for_close(5)

    def route_drip(self, q):
        n, ms = int(q.get("n", 50)), int(q.get("ms", 100))
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        for _ in range(n):
            try:
                self.raw(b".")
            except OSError:
                break
            time.sleep(ms / 1000)
        self.close_connection = True

    def wait_for_close(self, seconds):
        # Until the client gives up (its close makes the socket readable) or `seconds` pass.
        select.select([self.connection], [], [], seconds)
        self.close_connection = True

    def route_early_hints(self, q):
        self.raw(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        self.reply(200, b"after hints")

    def route_continue(self, q):
        body = self.read_body()
        self.reply(200, b"got " + body)

    def route_reject_continue(self, q):
        self.reply(403, b"no")

    def route_huge_headers(self, q):
        kb = int(q.get("kb", 100))
        self.send_response(200)
        self.send_header("X-Huge", "h" * (kb * 1024))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    # keep-alive

    def route_drop(self, q):
        # The first request on a connection is answered (keep-alive); a later one on the same
        # connection is dropped unanswered, like a server closing an idle connection just as
        # the request arrives.
        self.read_body()
        if self.served > 1:
            count(q.get("token"), "dropped")
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.reply(200, b"first")

    def route_close_later(self, q):
        # Answered with keep-alive, then closed while idle.
        self.reply(200, b"ok")
        self.wfile.flush()
        time.sleep(int(q.get("ms", 100)) / 1000)
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def route_count(self, q):
        with LOCK:
            doc = COUNTS.get(q.get("token"), {"connections": 0, "requests": 0, "dropped": 0})
            body = json.dumps(doc).encode()
        self.reply(200, body, content_type="application/json")

    def route_proxy_log(self, q):
        with LOCK:
            body = json.dumps(PROXY_LOG).encode()
        self.reply(200, body, content_type="application/json")

    # cookies

    def route_cookies(self, q):
        headers = [("Set-Cookie", "%s=%s; Path=/" % (k, v)) for k, v in q.items()]
        self.reply(200, b"set", headers=headers)


# -- the proxy ---------------------------------------------------------------------------------


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy_connection(client):
    try:
        head, rest = read_head(client)
        if head is None:
            return
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:]]
        auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
        with LOCK:
            PROXY_LOG.append({"line": lines[0], "auth": auth})
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            url = urlsplit(target)
            upstream = socket.create_connection((url.hostname, url.port or 80))
            path = url.path + ("?" + url.query if url.query else "")
            out = ["%s %s HTTP/1.1" % (method, path)]
            for k, v in headers:
                if k.lower() in ("proxy-authorization", "connection"):
                    continue
                out.append("%s:%s" % (k, v))
            out.append("X-Proxy-Saw: " + lines[0])
            out.append("X-Proxy-Auth: " + (auth or "none"))
            out.append("Connection: close")
            upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join()
    except OSError:
        pass
    finally:
        client.close()


def proxy_loop(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=proxy_connection, args=(conn,), daemon=True).start()


def main():
    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    first = Server(("127.0.0.1", 0), Handler)
    second = Server(("127.0.0.1", 0), Handler)
    proxy = socket.socket()
    proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(128)
    for server in (first, second):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=proxy_loop, args=(proxy,), daemon=True).start()
    print(
        "PORTS %d %d %d"
        % (first.server_address[1], second.server_address[1], proxy.getsockname()[1]),
        flush=True,
    )
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
