//! Config compile time and route lookup cost at scale: 10,000 APIs x 10 operations.
//! Run: `cargo bench --bench route_scale`. Prints medians; asserts nothing about time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use edgegate::config::{compile, ConfigSource};

fn document(apis: usize) -> String {
    let mut s = String::from("{\"schemaVersion\": 1, \"version\": \"scale\", \"apis\": [");
    for i in 0..apis {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\": \"api-{i}\", \"path\": \"tenant-{t}/svc-{i}\", \"serviceUrl\": \"http://127.0.0.1:{port}/base\", \
             \"subscriptionRequired\": false, \"operations\": [",
            t = i % 100,
            port = 10000 + i % 5000
        ));
        for op in 0..10 {
            if op > 0 {
                s.push(',');
            }
            let (method, template) = match op {
                0 => ("GET", "/items".to_string()),
                1 => ("POST", "/items".to_string()),
                2 => ("GET", "/items/{id}".to_string()),
                3 => ("PUT", "/items/{id}".to_string()),
                4 => ("DELETE", "/items/{id}".to_string()),
                5 => ("GET", "/items/{id}/parts/{part}".to_string()),
                6 => ("GET", "/reports/daily".to_string()),
                7 => ("GET", format!("/static-{i}/*")),
                8 => ("PATCH", "/items/{id}".to_string()),
                _ => ("*", "/health".to_string()),
            };
            s.push_str(&format!("{{\"id\": \"op-{op}\", \"method\": \"{method}\", \"urlTemplate\": \"{template}\"}}"));
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let text = document(10_000);
    println!(
        "document: {} bytes, 10000 apis, 100000 operations",
        text.len()
    );
    let mut compiles = Vec::new();
    let mut runtime = None;
    for _ in 0..5 {
        let t = Instant::now();
        let mut rt = compile(&text, ConfigSource::Local).expect("valid");
        let unresolved = rt.resolve();
        compiles.push(t.elapsed());
        assert!(unresolved.is_empty());
        runtime = Some(rt);
    }
    let rt = runtime.expect("compiled");
    println!(
        "compile + resolve (median of 5): {:.1} ms",
        median(compiles).as_secs_f64() * 1e3
    );
    // What the loop does on apply: store the new Arc. Dropping the old runtime frees
    // every allocation of a 10k-API config; the loop hands that to the agent thread.
    let old = compile(&text, ConfigSource::Local).expect("valid");
    let mut slot = Some(std::sync::Arc::new(old));
    let swapped = std::sync::Arc::new(rt);
    let t = Instant::now();
    let previous = slot.replace(swapped.clone());
    let swap = t.elapsed();
    let t = Instant::now();
    drop(previous);
    println!(
        "swap on the loop: {swap:?}; freeing the old runtime (agent thread): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    for (label, path, method) in [
        ("short path", "/tenant-7/svc-4007/items/42", "GET"),
        (
            "param + param",
            "/tenant-7/svc-4007/items/42/parts/9",
            "GET",
        ),
        (
            "wildcard, 12 segs",
            "/tenant-7/svc-4007/static-4007/a/b/c/d/e/f/g/h/i",
            "GET",
        ),
        ("miss at api", "/tenant-7/nothing/here", "GET"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..7 {
            let n = 200_000;
            let t = Instant::now();
            for _ in 0..n {
                let m = swapped.api_table.find(black_box(path), "h", false);
                if let Some(m) = m {
                    let api = &swapped.apis[m.api as usize];
                    black_box(api.op_table.find(&path[m.rest_offset..], None, method));
                }
            }
            samples.push(t.elapsed() / n);
        }
        println!(
            "lookup {label:<18} ({} bytes): {:>4} ns",
            path.len(),
            median(samples).as_nanos()
        );
    }
}
