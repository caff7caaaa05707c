#!/usr/bin/env python3
"""Federation at scale, on loopback, with the release binaries: a management plane whose
gateway serves N APIs x 10 operations. Measures (no assertions):
  - gateway start to serving the plane's config, and backup size;
  - admin PUT to the change serving on a long-polling gateway (median/p99 of R changes);
  - gateway RSS with the document loaded, and after the changes (RSS_EVERY=k: every k).
The gateway runs with the Environment= of systemd/edgegate-gateway.service (UNIT_ENV=0: without).
Usage: cargo build --release && python3 bench/federation_scale.py [N=10000] [R=20]
"""
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "edgegate")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
R = int(sys.argv[2]) if len(sys.argv) > 2 else 20
TOKEN = "bench-admin-token-0123456789"
procs = []

def start(args, env=None):
    p = subprocess.Popen([BIN] + args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, **(env or {})))
    procs.append(p)
    deadline = time.time() + 60
    for line in p.stderr:
        if "listening on http://" in line:
            addr = line.split("listening on http://")[1].strip()
            # keep reading stderr, as journald would
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, addr
        if time.time() > deadline:
            break
    raise SystemExit(f"{args[0]} did not start")

def unit_env():
    """The Environment= of the shipped gateway unit (the allocator settings), as a packaged
    gateway runs; UNIT_ENV=0 runs the binary without them."""
    if os.environ.get("UNIT_ENV") == "0":
        return {}
    env = {}
    with open(os.path.join(ROOT, "systemd", "edgegate-gateway.service")) as f:
        for line in f:
            if line.startswith("Environment="):
                key, _, value = line.strip()[len("Environment="):].partition("=")
                env[key] = value
    print("gateway environment from systemd/edgegate-gateway.service:", env or "none", flush=True)
    return env

def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def main():
    tmp = tempfile.mkdtemp(prefix="edgegate-fedscale-")
    try:
        db = os.path.join(tmp, "plane.db")
        admin = {"Authorization": f"Bearer {TOKEN}"}
        plane, paddr = start(["manage", "--listen", "127.0.0.1:0", "--db", db], {"EDGEGATE_MANAGE_ADMIN_TOKEN": TOKEN})
        base = f"http://{paddr}"
        call("PUT", f"{base}/admin/gateways/gw1", "{}", admin)
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        token = json.loads(call("POST", f"{base}/admin/gateways/gw1/token", json.dumps({"expiry": expiry}), admin)[1])["value"]
        plane.send_signal(signal.SIGKILL); plane.wait()
        # bulk load N APIs x 10 operations, linked to gw1 (valid by construction)
        con = sqlite3.connect(db)
        ops = [("GET", "/items"), ("POST", "/items"), ("GET", "/items/{id}"), ("PUT", "/items/{id}"),
               ("DELETE", "/items/{id}"), ("GET", "/items/{id}/parts/{part}"), ("GET", "/reports/daily"),
               ("PATCH", "/items/{id}"), ("*", "/health"), ("GET", "/static/*")]
        for i in range(N):
            api = f"api-{i}"
            con.execute("INSERT INTO apis (id, body) VALUES (?, ?)", (api, json.dumps(
                {"path": f"tenant-{i % 100}/svc-{i}", "serviceUrl": f"http://127.0.0.1:{10000 + i % 5000}/base",
                 "protocols": ["http"], "subscriptionRequired": False})))
            for j, (m, t) in enumerate(ops):
                con.execute("INSERT INTO operations (api, id, body) VALUES (?, ?, ?)", (api, f"op-{j}", json.dumps({"method": m, "urlTemplate": t})))
            con.execute("INSERT INTO gateway_apis (gateway, api) VALUES ('gw1', ?)", (api,))
        con.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        con.commit(); con.close()
        plane, paddr = start(["manage", "--listen", paddr, "--db", db], {"EDGEGATE_MANAGE_ADMIN_TOKEN": TOKEN})

        backup = os.path.join(tmp, "gw-backup.db")
        t0 = time.time()
        gw, gaddr = start(["gateway", "--set", f"config.service.endpoint={base}", "--set", f"config.service.auth={token}",
                           "--set", "net.server.http.listen=127.0.0.1:0", "--set", "telemetry.logs.std=text",
                           "--set", f"config.backup.path={backup}"], unit_env())
        start_s = time.time() - t0
        status = json.loads(call("GET", f"http://{gaddr}/status-0123456789abcdef")[1])
        size = sum(os.path.getsize(backup + s) for s in ("", "-wal") if os.path.exists(backup + s))
        print(f"apis={N} operations={N*10}")
        print(f"gateway start -> serving the plane's config (fetch + compile + backup + bind): {start_s*1000:.0f} ms, version {status['configVersion']}")
        print(f"backup store size with one version: {size/1024/1024:.1f} MiB")
        rss = rss_kib(gw.pid)
        print(f"gateway RSS with the document loaded: {rss/1024:.1f} MiB")

        delays, put_times = [], []
        for k in range(R):
            before = json.loads(call("GET", f"http://{gaddr}/status-0123456789abcdef")[1])["configVersion"]
            t = time.time()
            s, b = call("PUT", f"{base}/admin/apis/api-7", json.dumps(
                {"path": "tenant-7/svc-7", "serviceUrl": f"http://127.0.0.1:{20000 + k}/base", "protocols": ["http"],
                 "subscriptionRequired": False}), admin)
            assert s == 200, b
            put_times.append(time.time() - t)
            deadline = time.time() + 60
            while time.time() < deadline:
                v = json.loads(call("GET", f"http://{gaddr}/status-0123456789abcdef")[1])["configVersion"]
                if v != before:
                    break
                time.sleep(0.005)
            delays.append(time.time() - t)
            if os.environ.get("RSS_EVERY") and (k + 1) % int(os.environ["RSS_EVERY"]) == 0:
                time.sleep(1.5)
                print(f"  after {k+1} changes: RSS {rss_kib(gw.pid)/1024:.1f} MiB", flush=True)
        delays.sort()
        med, p99 = delays[len(delays)//2], delays[min(len(delays)-1, int(len(delays)*0.99))]
        print(f"admin PUT -> change serving on a long-polling gateway, {R} changes: median {med*1000:.0f} ms, max {delays[-1]*1000:.0f} ms (p99 {p99*1000:.0f} ms)")
        put_times.sort()
        print(f"  of which the admin PUT itself (validation, path-conflict scan over {N} APIs, durable write): median {put_times[len(put_times)//2]*1000:.0f} ms")
        print(f"gateway RSS after {R} re-applies: {rss_kib(gw.pid)/1024:.1f} MiB")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL); p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

main()
