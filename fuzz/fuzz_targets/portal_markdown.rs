//! The portal's Markdown pages over any text: rendering never panics, and no tag other
//! than the few it writes (and no attribute but a checked href) reaches the page.
#![no_main]

use edgegate::manage::web::markdown::to_html;
use libfuzzer_sys::fuzz_target;

const TAGS: &[&str] = &[
    "h2", "h3", "h4", "h5", "h6", "h7", "p", "em", "strong", "code", "pre", "ul", "ol", "li",
    "blockquote", "hr", "a",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let html = to_html(text);
    for piece in html.split('<').skip(1) {
        let tag = piece
            .trim_start_matches('/')
            .split(|c: char| c == '>' || c == ' ')
            .next()
            .unwrap_or("");
        assert!(TAGS.contains(&tag), "unexpected tag <{tag}> in {html}");
        if let Some(attrs) = piece.split('>').next().and_then(|h| h.strip_prefix("a ")) {
            assert!(attrs.starts_with("href=\""), "{html}");
            let href = &attrs[6..];
            // a scheme is http(s) or mailto; anything else is a same-site path or a fragment
            let lower = href.to_ascii_lowercase();
            assert!(
                lower.starts_with("http://")
                    || lower.starts_with("https://")
                    || lower.starts_with("mailto:")
                    || (href.starts_with('/') && !href.starts_with("//"))
                    || href.starts_with('#'),
                "{html}"
            );
        }
    }
});
