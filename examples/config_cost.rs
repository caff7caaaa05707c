//! What a config document costs the gateway: parse and compile time, and resident memory
//! after parsing, after compiling, and with a second runtime alive (as during an apply).
//!   cargo run --release --example config_cost -- FILE
//! (bench/federation_scale.py measures the same end to end, through the plane.)

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: config_cost FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).expect("readable file");
    let base = rss_kib();
    println!("text: {} KiB, RSS {base} KiB", text.len() / 1024);
    let t = std::time::Instant::now();
    let tree = edgegate::config::json::parse(&text).expect("valid JSON");
    println!(
        "parse: {:?}, RSS +{} KiB",
        t.elapsed(),
        rss_kib().saturating_sub(base)
    );
    drop(tree);
    let source = edgegate::config::ConfigSource::Local;
    let t = std::time::Instant::now();
    let first = edgegate::config::compile(&text, source).expect("a valid config");
    let one = rss_kib();
    println!(
        "compile: {:?}, RSS +{} KiB with one runtime",
        t.elapsed(),
        one.saturating_sub(base)
    );
    let t = std::time::Instant::now();
    let second = edgegate::config::compile(&text, source).expect("a valid config");
    println!(
        "compile again: {:?}, RSS +{} KiB with two runtimes",
        t.elapsed(),
        rss_kib().saturating_sub(base)
    );
    drop((first, second));
}
