"""Crawler peer for benches/peers/src/bin/crawl.rs: gevent greenlets and urllib3.

Run: taskset -c 1 python3 crawl_gevent.py http://127.0.0.1:PORT/page/0.html 100
Prints "RESULT pages=N bytes=N secs=S cpu=S errors=N" like the Rust peers. Links are found the
way every peer finds them: each href="..." in the body, root-relative paths only.
"""
from gevent import monkey

monkey.patch_all()

import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent.pool  # noqa: E402
import gevent.queue  # noqa: E402
import urllib3  # noqa: E402

HREF = re.compile(rb'href="(/[^"]*)"')


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    seed, concurrency = sys.argv[1], int(sys.argv[2])
    parts = urlsplit(seed)
    http = urllib3.HTTPConnectionPool(
        parts.hostname, parts.port, maxsize=concurrency, block=True, retries=False
    )
    frontier = gevent.queue.JoinableQueue()
    seen = {parts.path}
    frontier.put(parts.path)
    stats = {"pages": 0, "bytes": 0, "errors": 0}

    def worker():
        while True:
            path = frontier.get()
            try:
                resp = http.request("GET", path, preload_content=True)
                body = resp.data
                stats["pages"] += 1
                stats["bytes"] += len(body)
                if resp.status != 200:
                    stats["errors"] += 1
                for link in HREF.findall(body):
                    link = link.decode()
                    if link not in seen:
                        seen.add(link)
                        frontier.put(link)
            except Exception:
                stats["pages"] += 1
                stats["errors"] += 1
            finally:
                frontier.task_done()

    start, cpu0 = time.perf_counter(), cpu_seconds()
    pool = gevent.pool.Pool(concurrency)
    for _ in range(concurrency):
        pool.spawn(worker)
    frontier.join()
    pool.kill()
    secs = time.perf_counter() - start
    print(
        "RESULT pages=%d bytes=%d secs=%.6f cpu=%.6f errors=%d"
        % (stats["pages"], stats["bytes"], secs, cpu_seconds() - cpu0, stats["errors"])
    )


if __name__ == "__main__":
    main()
