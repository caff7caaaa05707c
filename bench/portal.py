#!/usr/bin/env python3
"""The developer portal with a large catalogue, and a large import, on a release build.

1. A plane with 1,000 APIs (each imported from a small generated OpenAPI document with 5
   operations and 2 schemas) in one published product: the time to build the catalogue,
   the time to render the portal's pages (catalogue page 1, a search, page 50, an API's
   page, an operation's page), medians of 50 requests each after one warm-up, and the
   plane's RSS (VmRSS and its peak, VmHWM).
2. One generated document with 4,000 operations and 1,000 schemas imported into the same
   plane with PUT /admin/apis/big?import=openapi: its time, then the plane's RSS again,
   and the render time of the big API's page and of one of its operations.

    bench/portal.py            # builds target/release/edgegate first
Loopback only; prints a table of medians (ms) and RSS (MiB).
"""
import json, os, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-admin-token-0123456789"
PORT = int(os.environ.get("PORT", "17979"))
BASE = f"http://127.0.0.1:{PORT}"


def call(method, path, body=None, ctype="application/json"):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def spec(title, n_ops, n_schemas, tag):
    schemas = {}
    for i in range(n_schemas):
        props = {f"field{j}": {"type": "string", "description": f"Field {j}"} for j in range(8)}
        props["id"] = {"type": "integer", "format": "int64"}
        if i > 0:
            props["parent"] = {"$ref": f"#/components/schemas/Thing{i - 1}"}
        schemas[f"Thing{i}"] = {"type": "object", "required": ["id"], "properties": props}
    paths = {}
    for i in range(n_ops):
        s = i % max(n_schemas, 1)
        ref = {"$ref": f"#/components/schemas/Thing{s}"}
        paths[f"/things{i}/{{id}}"] = {
            "get": {
                "operationId": f"getThing{i}", "summary": f"Get thing {i}", "tags": [tag],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                               {"name": "expand", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "The thing",
                                      "content": {"application/json": {"schema": ref}}},
                              "404": {"description": "Not found"}},
            }
        }
    return json.dumps({"openapi": "3.0.3", "info": {"title": title, "version": "1", "description": f"The {title} API."},
                       "servers": [{"url": "https://backend.example/api"}],
                       "tags": [{"name": tag}], "paths": paths, "components": {"schemas": schemas}})


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out


def timed(path, n=50):
    urllib.request.urlopen(BASE + path, timeout=60).read()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(BASE + path, timeout=60) as r:
            body = r.read()
            assert r.status == 200, (path, r.status)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), len(body)


def main():
    subprocess.run(["cargo", "build", "--release", "--manifest-path", f"{ROOT}/Cargo.toml"], check=True,
                   stdout=sys.stderr)
    work = tempfile.mkdtemp(prefix="edgegate-portal-bench-")
    env = dict(os.environ, EDGEGATE_MANAGE_ADMIN_TOKEN=TOKEN)
    plane = subprocess.Popen([f"{ROOT}/target/release/edgegate", "manage", "--listen", f"127.0.0.1:{PORT}",
                              "--db", f"{work}/plane.db"], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(BASE + "/portal", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        call("PUT", "/admin/products/all", '{"displayName": "Everything", "subscriptionRequired": true}')
        t = time.perf_counter()
        for i in range(1000):
            s, b = call("PUT", f"/admin/apis/api{i:04d}?import=openapi&path=api{i:04d}",
                        spec(f"Service {i:04d}", 5, 2, f"team{i % 10}"))
            assert s in (200, 201), b
            s, b = call("PUT", f"/admin/products/all/apis/api{i:04d}", "")
            assert s in (201, 204), b
        fill = time.perf_counter() - t
        after_fill = rss(plane.pid)
        rows = [("1,000 APIs imported and linked (2,000 admin calls)", fill * 1000, None)]
        for label, path in [("catalogue, page 1 (cold: after a change)", None),
                            ("catalogue, page 1", "/portal"),
                            ("catalogue, search 'Service 09'", "/portal?q=Service+09"),
                            ("catalogue, tag team3, page 2", "/portal?tag=team3&page=2"),
                            ("catalogue, page 50", "/portal?page=50"),
                            ("API page (5 operations)", "/portal/apis/api0500"),
                            ("operation page", "/portal/apis/api0500/operations/getthing3")]:
            if path is None:
                call("PUT", "/admin/products/all", '{"displayName": "Everything!", "subscriptionRequired": true}')
                t = time.perf_counter()
                urllib.request.urlopen(BASE + "/portal", timeout=60).read()
                rows.append((label, (time.perf_counter() - t) * 1000, None))
                continue
            ms, size = timed(path)
            rows.append((label, ms, size))
        big = spec("Big", 4000, 1000, "big")
        t = time.perf_counter()
        s, b = call("PUT", "/admin/apis/big?import=openapi&path=big", big)
        assert s in (200, 201), b[:300]
        rows.append((f"import of 4,000 operations, 1,000 schemas ({len(big) / 1e6:.1f} MB)",
                     (time.perf_counter() - t) * 1000, None))
        call("PUT", "/admin/products/all/apis/big", "")
        after_big = rss(plane.pid)
        for label, path in [("big API's page (4,000 operations)", "/portal/apis/big"),
                            ("big API's operation page", "/portal/apis/big/operations/getthing3999"),
                            ("catalogue, page 1 (1,001 APIs)", "/portal")]:
            ms, size = timed(path, 20)
            rows.append((label, ms, size))
        print(f"{'what':64} {'median ms':>10} {'page KiB':>9}")
        for label, ms, size in rows:
            print(f"{label:64} {ms:10.1f} {'' if size is None else f'{size / 1024:9.1f}'}")
        print(f"plane RSS after 1,000 APIs: {after_fill['VmRSS']:.1f} MiB (peak {after_fill['VmHWM']:.1f})")
        print(f"plane RSS after the big import: {after_big['VmRSS']:.1f} MiB (peak {after_big['VmHWM']:.1f})")
    finally:
        plane.terminate()
        plane.wait()


if __name__ == "__main__":
    main()
