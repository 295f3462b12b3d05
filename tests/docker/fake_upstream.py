#!/usr/bin/env python3
"""An ollama-like registry for the Docker end-to-end test (Python 3 standard library only).

    fake_upstream.py [--registry-port 5000] [--cdn-port 5001] [--cdn-host cdn]
                     [--model library/tiny:1b] [--layers 25165824,3145737] [--seed 7]

It has registry.ollama.ai's quirks, as tests/support/upstream.rs does:
- `GET /v2/` is 404;
- manifests are served as `text/plain`, and answer 412 unless the User-Agent starts with
  `ollama/`;
- blob GET and HEAD answer 307 to a "presigned" URL on another host (`--cdn-host`, the
  second network alias of this container), which honours `Range`.

The model is made up at start from `--seed`: its layers (pseudo-random bytes of the given
sizes), a config, and the manifest naming them, byte-identical on every run.

Extra endpoints, for the test script:
- `GET /_fake/model` on the registry port: {"name", "manifest_digest", "blobs": [{"digest",
  "size"}]} (layers in order, then the config);
- `GET /_fake/stats` on either port: {"manifest_gets", "blob_redirects", "cdn_gets",
  "cdn_bytes"}.
"""

import argparse
import hashlib
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS = {"manifest_gets": 0, "blob_redirects": 0, "cdn_gets": 0, "cdn_bytes": 0}
LOCK = threading.Lock()


def count(key, n=1):
    with LOCK:
        COUNTS[key] += n


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_model(sizes, seed):
    layers = [random.Random(seed * 1000 + i).randbytes(n) for i, n in enumerate(sizes)]
    config = b'{"model_format":"gguf","model_family":"granite"}'
    layer_json = ",".join(
        '{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s","size":%d}'
        % (sha256(l), len(l))
        for l in layers
    )
    manifest = (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        '"digest":"sha256:%s","size":%d},"layers":[%s]}' % (sha256(config), len(config), layer_json)
    ).encode()
    return manifest, layers + [config]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream"

    def log_message(self, fmt, *args):  # one short line per request, on stderr
        super().log_message(fmt, *args)

    def send(self, code, body=b"", ctype="application/json", headers=(), head=False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    def route(self, head):
        path = self.path.split("?", 1)[0]
        if path == "/_fake/stats":
            with LOCK:
                return self.send(200, json.dumps(COUNTS).encode(), head=head)
        if self.server.role == "registry":
            return self.registry(path, head)
        return self.cdn(path, head)

    def registry(self, path, head):
        st = self.server.state
        if path == "/_fake/model":
            return self.send(200, json.dumps(st["model"]).encode(), head=head)
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m:
            return self.send(404, b"404 page not found", ctype="text/plain")
        repo, kind, ref = m.groups()
        if kind == "manifests":
            count("manifest_gets")
            if not self.headers.get("User-Agent", "").startswith("ollama/"):
                body = b'{"errors":[{"code":"UNSUPPORTED","message":"this model requires a newer version of Ollama"}]}'
                return self.send(412, body, head=head)
            body = st["manifests"].get((repo, ref))
            if body is None:
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                return self.send(404, body, head=head)
            return self.send(200, body, ctype="text/plain; charset=utf-8", head=head)
        hexd = ref.removeprefix("sha256:")
        if hexd not in st["blobs"]:
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', head=head)
        count("blob_redirects")
        loc = "http://%s:%d/r2/blobs/%s?X-Amz-Signature=sig0&X-Amz-Expires=1200" % (
            st["cdn_host"],
            st["cdn_port"],
            hexd,
        )
        return self.send(307, headers=[("Location", loc)], head=head)

    def cdn(self, path, head):
        st = self.server.state
        m = re.fullmatch(r"/r2/blobs/([0-9a-f]{64})", path)
        data = st["blobs"].get(m.group(1)) if m else None
        if data is None:
            return self.send(404, b"<Error><Code>NoSuchKey</Code></Error>", ctype="application/xml")
        size = len(data)
        if head:
            return self.head_blob(size)
        count("cdn_gets")
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else size - 1, size - 1)
            if start >= size or end < start:
                return self.send(416, headers=[("Content-Range", "bytes */%d" % size)])
            part = data[start : end + 1]
            headers = [("Accept-Ranges", "bytes"), ("Content-Range", "bytes %d-%d/%d" % (start, end, size))]
            code = 206
        else:
            part, headers, code = data, [("Accept-Ranges", "bytes")], 200
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(part)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        view = memoryview(part)
        for i in range(0, len(view), 1 << 16):
            self.wfile.write(view[i : i + (1 << 16)])
            count("cdn_bytes", min(1 << 16, len(view) - i))

    def head_blob(self, size):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()


def serve(port, role, state):
    srv = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    srv.daemon_threads = True
    srv.role = role
    srv.state = state
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry-port", type=int, default=5000)
    ap.add_argument("--cdn-port", type=int, default=5001)
    ap.add_argument("--cdn-host", default="cdn")
    ap.add_argument("--model", default="library/tiny:1b")
    ap.add_argument("--layers", default="25165824,3145737", help="layer sizes in bytes")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    repo, tag = a.model.rsplit(":", 1)
    manifest, blobs = make_model([int(s) for s in a.layers.split(",")], a.seed)
    state = {
        "cdn_host": a.cdn_host,
        "cdn_port": a.cdn_port,
        "blobs": {sha256(b): b for b in blobs},
        "manifests": {(repo, tag): manifest, (repo, "sha256:" + sha256(manifest)): manifest},
        "model": {
            "name": a.model,
            "manifest_digest": "sha256:" + sha256(manifest),
            "blobs": [{"digest": "sha256:" + sha256(b), "size": len(b)} for b in blobs],
        },
    }
    reg = serve(a.registry_port, "registry", state)
    cdn = serve(a.cdn_port, "cdn", state)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    print("fake upstream: registry :%d, cdn %s:%d, model %s (%d blobs, %d bytes)"
          % (a.registry_port, a.cdn_host, a.cdn_port, a.model, len(blobs), sum(map(len, blobs))),
          flush=True)
    reg.serve_forever()


if __name__ == "__main__":
    main()
