#!/usr/bin/env python3
"""The Docker end-to-end test's client (Python 3 standard library only), run with
`docker exec` inside a container on the test's network.

    client.py wait-ok URL [URL...] [--timeout 60]
        until GET URL answers 200, for each URL
    client.py json URL
        GET URL, print the JSON body
    client.py fetch URL FILE
        GET URL into FILE (e.g. shoal's CA certificate)
    client.py wait-peer-blobs URL PEER_URL N [--timeout 60]
        until URL/_shoal/v1/peers lists PEER_URL holding N blobs
    client.py pull SHOAL_URL MODEL_URL
        a pull in mirror mode, as a generic OCI client does it: the manifest by tag (with
        ollama's User-Agent and Accept), then for each blob a HEAD and a plain GET of the
        body, following redirects; every digest and size is checked against MODEL_URL
        (the fake upstream's /_fake/model)

Exit status 0 on success; the last line of stdout is one JSON object.
"""

import argparse
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request

OLLAMA_UA = "ollama/0.12.0 (amd64 linux) Go/go1.24.0"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


class KeepHead(urllib.request.HTTPRedirectHandler):
    """urllib turns a redirected HEAD into a GET; a HEAD must stay a HEAD."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


OPENER = urllib.request.build_opener(KeepHead)


def request(url, method="GET", headers=None, timeout=30):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    with OPENER.open(req, timeout=timeout) as r:
        return r.status, r.headers, r.read()  # headers: case-insensitive


def get_json(url):
    return json.loads(request(url)[2])


def until(deadline, probe, what):
    last = None
    while time.monotonic() < deadline:
        try:
            ok, last = probe()
            if ok:
                return last
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = repr(e)
        time.sleep(0.5)
    raise SystemExit(json.dumps({"ok": False, "error": f"timed out waiting for {what}", "last": last}))


def wait_ok(urls, timeout):
    deadline = time.monotonic() + timeout
    for url in urls:
        until(deadline, lambda: (request(url, timeout=5)[0] == 200, None), f"{url} to answer 200")
    print(json.dumps({"ok": True}))


def wait_peer_blobs(url, peer, n, timeout):
    def probe():
        peers = get_json(url + "/_shoal/v1/peers").get("peers", [])
        return any(p.get("url") == peer and p.get("blobs") == n for p in peers), peers

    peers = until(time.monotonic() + timeout, probe, f"{url} to see {peer} holding {n} blobs")
    print(json.dumps({"ok": True, "peers": peers}))


def pull(shoal, model_url):
    model = get_json(model_url)
    repo, tag = model["name"].rsplit(":", 1)
    t0 = time.monotonic()
    _, _, manifest = request(f"{shoal}/v2/{repo}/manifests/{tag}",
                             headers={"User-Agent": OLLAMA_UA, "Accept": MANIFEST_ACCEPT})
    got = "sha256:" + hashlib.sha256(manifest).hexdigest()
    if got != model["manifest_digest"]:
        return {"ok": False, "error": f"manifest digest {got}, want {model['manifest_digest']}"}
    total = 0
    for blob in model["blobs"]:
        url = f"{shoal}/v2/{repo}/blobs/{blob['digest']}"
        _, headers, _ = request(url, method="HEAD")
        size = int(headers.get("Content-Length", -1))
        if size != blob["size"]:
            return {"ok": False, "error": f"HEAD {blob['digest']}: Content-Length {size}, want {blob['size']}"}
        status, _, body = request(url, timeout=120)
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != blob["digest"] or len(body) != blob["size"]:
            return {"ok": False, "error": f"GET {blob['digest']}: {len(body)} bytes with digest {got} (status {status})"}
        total += len(body)
    return {"ok": True, "blobs": len(model["blobs"]), "bytes": total,
            "secs": round(time.monotonic() - t0, 3), "manifest_sha256": model["manifest_digest"]}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("wait-ok")
    p.add_argument("urls", nargs="+")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("json")
    p.add_argument("url")
    p = sub.add_parser("fetch")
    p.add_argument("url")
    p.add_argument("file")
    p = sub.add_parser("wait-peer-blobs")
    p.add_argument("url")
    p.add_argument("peer")
    p.add_argument("n", type=int)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("pull")
    p.add_argument("shoal")
    p.add_argument("model_url")
    a = ap.parse_args()

    if a.cmd == "wait-ok":
        wait_ok(a.urls, a.timeout)
    elif a.cmd == "json":
        print(json.dumps(get_json(a.url)))
    elif a.cmd == "fetch":
        body = request(a.url)[2]
        with open(a.file, "wb") as f:
            f.write(body)
        print(json.dumps({"ok": True, "bytes": len(body)}))
    elif a.cmd == "wait-peer-blobs":
        wait_peer_blobs(a.url, a.peer, a.n, a.timeout)
    elif a.cmd == "pull":
        try:
            res = pull(a.shoal, a.model_url)
        except (OSError, urllib.error.URLError) as e:
            res = {"ok": False, "error": repr(e)}
        print(json.dumps(res))
        sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
