"""Echo server for benches/peers/src/bin/echo.rs: gevent's StreamServer, a greenlet per connection.

Run: taskset -c 0 python3 echo_gevent.py 127.0.0.1:0
Prints "listening <addr>" first, as the Rust servers do.
"""
import socket
import sys

from gevent.server import StreamServer


def handle(sock, _address):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    recv, sendall = sock.recv, sock.sendall
    while True:
        data = recv(4096)
        if not data:
            break
        sendall(data)


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    server = StreamServer((host, int(port)), handle, backlog=1024)
    server.start()
    print("listening %s:%d" % server.address[:2], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
