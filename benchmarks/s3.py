"""An S3-compatible server on 127.0.0.1 (moto's server mode), reached through fsspec / s3fs.

It is real HTTP: every GET and every byte range costs a request round trip, which is what
separates a per-file layout (one request per clip) from a sharded store (many clips per
request). The endpoint goes into fsspec's configuration and the environment, so the store
reader, which opens `s3://` URLs with no extra options, and forked or spawned DataLoader
workers all reach it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
from collections.abc import Iterator

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[object]:
    """Start the server, create `bucket`, yield an s3fs filesystem for it; stop and restore after."""
    import fsspec.config
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    saved_env = {k: os.environ.get(k) for k in env}
    saved_conf = fsspec.config.conf.get("s3")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    # One log line per request from the HTTP server, and aiohttp's "Unclosed client session" when
    # forked DataLoader workers exit with their s3fs session open: noise, not results.
    quiet = {name: logging.getLogger(name).level for name in ("werkzeug", "asyncio")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    server.start()
    try:
        os.environ.update(env)
        fsspec.config.conf["s3"] = {"endpoint_url": endpoint}
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir(bucket)
        yield fs
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        gc.collect()  # sessions left open by readers are closed now, while their complaints are muted
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf
