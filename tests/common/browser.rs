//! A real browser for the portal and console tests: Debian's headless Chromium driven
//! through ChromeDriver's W3C WebDriver protocol (plain HTTP on loopback, spoken here
//! with ureq). `EDGEGATE_CHROMIUM` / `EDGEGATE_CHROMEDRIVER` override the binaries'
//! paths. Screenshots go under `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => o.get(key),
        _ => None,
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session (1280×900).
    pub fn start() -> Browser {
        let driver_bin = std::env::var("EDGEGATE_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium =
            std::env::var("EDGEGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&driver_bin).exists() && std::path::Path::new(&chromium).exists(),
            "the browser tests need Chromium and ChromeDriver: apt-get install chromium chromium-driver \
             (or set EDGEGATE_CHROMIUM and EDGEGATE_CHROMEDRIVER)"
        );
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = super::temp_dir("chromium-profile");
        let caps = format!(
            r#"{{"capabilities": {{"alwaysMatch": {{"browserName": "chrome", "goog:chromeOptions": {{
                "binary": {}, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,900", "--no-first-run",
                "--user-data-dir={}", "--no-proxy-server"]}}}}}}}}"#,
            super::js(&chromium),
            profile.display()
        );
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            agent,
        };
        let v = browser.call("POST", "/session", &caps);
        browser.session = match field(&v, "sessionId") {
            Some(Value::String(s)) => s.clone(),
            _ => panic!("no WebDriver session: {}", json::to_string(&v)),
        };
        browser
    }

    /// One WebDriver command; its `value`, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: &str) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// One WebDriver command: its `value`, or the WebDriver error's name and message.
    fn try_call(&self, method: &str, path: &str, body: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body),
        };
        let text = resp
            .expect("chromedriver answers")
            .into_body()
            .into_with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        let v: Value = json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        let value = field(&v, "value").cloned().unwrap_or(Value::Null);
        if let Some(Value::String(e)) = field(&value, "error") {
            return Err(format!("{e}: {}", json::to_string(&value)));
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            &format!(r#"{{"url": {}}}"#, super::js(url)),
        );
    }

    pub fn current_url(&self) -> String {
        match self.call("GET", &self.session_path("/url"), "") {
            Value::String(s) => s,
            other => panic!("{}", json::to_string(&other)),
        }
    }

    /// The element `css` selects, if there is one now.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let body = format!(
            r#"{{"using": "css selector", "value": {}}}"#,
            super::js(css)
        );
        let v = self.call("POST", &self.session_path("/elements"), &body);
        match v {
            Value::Array(a) => a.first().and_then(|e| match field(e, ELEMENT_KEY) {
                Some(Value::String(id)) => Some(id.clone()),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn find(&self, css: &str) -> String {
        self.try_find(css).unwrap_or_else(|| {
            panic!(
                "no element {css} on {}:\n{}",
                self.current_url(),
                self.text("body")
            )
        })
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            "{}",
        );
    }

    /// Clicks a button that submits a form and waits until the page it leads to has
    /// replaced this one (a click returns before a form's navigation is done, and a
    /// `goto` right after it could cut the post short).
    pub fn submit(&self, css: &str) {
        let before = self.find("html");
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let path = self.session_path(&format!("/element/{before}/name"));
            // stale, or (mid-navigation) "does not belong to the document": replaced
            if self.try_call("GET", &path, "").is_err() {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {css} led nowhere");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Replaces the value of the input `css` with `text`.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/clear")),
            "{}",
        );
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            &format!(r#"{{"text": {}}}"#, super::js(text)),
        );
    }

    /// The rendered text of the element `css`.
    pub fn text(&self, css: &str) -> String {
        let Some(id) = self.try_find(css) else {
            return String::new();
        };
        // the page may be replaced between finding and reading: read as empty then
        let path = self.session_path(&format!("/element/{id}/text"));
        match self.try_call("GET", &path, "") {
            Ok(Value::String(s)) => s,
            _ => String::new(),
        }
    }

    /// The text of `css` once it equals `expected` (a click's navigation may still be
    /// under way when the click returns), or what it is after 10 s.
    pub fn text_when(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text(css);
            if t == expected || Instant::now() >= deadline {
                return t;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's URL once it equals `expected`, or what it is after 10 s.
    pub fn url_when(&self, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = self.current_url();
            if u == expected || Instant::now() >= deadline {
                return u;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the viewport to `target/screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let png = match self.call("GET", &self.session_path("/screenshot"), "") {
            Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).unwrap(),
            other => panic!("{}", json::to_string(&other)),
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Reloads the page until `check` holds (bounded).
    pub fn reload_until(&self, limit: Duration, mut check: impl FnMut(&Browser) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(300));
            self.call("POST", &self.session_path("/refresh"), "{}");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
