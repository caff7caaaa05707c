//! HTML for the portal and the console: escaping, the page frame (header, navigation,
//! branding), forms with their CSRF token, and small server-side SVG charts. Pages are
//! strings built here; nothing runs in the browser (the pages carry no script at all,
//! which the Content-Security-Policy in web/mod.rs enforces).
//! Must not touch: the store, sessions (callers pass what a page shows).

use std::fmt::Write as _;

/// `s` with the five HTML-significant characters escaped (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or query value percent-encoded (unreserved characters kept).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the frame of a page shows around its content.
pub struct Frame<'a> {
    /// The site's title (branding) and where its name links to.
    pub site: String,
    pub home: &'a str,
    /// Links of the navigation bar: (label, href).
    pub nav: Vec<(String, String)>,
    /// Who is signed in, if anyone, with the sign-out form's action and CSRF token.
    pub signed_in: Option<(String, String, String)>,
    /// The stylesheet's path.
    pub stylesheet: &'a str,
    /// A second stylesheet with the site's colours, if it has its own.
    pub theme: Option<&'a str>,
    /// The logo, an inline `data:image/…` URL.
    pub logo: Option<String>,
}

/// A whole page: `title` in the tab and as the heading, `body` as given (already HTML).
pub fn page(frame: &Frame, title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · {}</title><link rel=\"stylesheet\" href=\"{}\">{}</head><body>\
         <header><a class=\"site\" href=\"{}\">{}{}</a><nav>",
        esc(title),
        esc(&frame.site),
        esc(frame.stylesheet),
        frame.theme.map_or(String::new(), |t| format!(
            "<link rel=\"stylesheet\" href=\"{}\">",
            esc(t)
        )),
        esc(frame.home),
        frame.logo.as_deref().map_or(String::new(), |l| format!(
            "<img class=\"logo\" src=\"{}\" alt=\"\">",
            esc(l)
        )),
        esc(&frame.site)
    );
    for (label, href) in &frame.nav {
        let _ = write!(out, "<a href=\"{}\">{}</a>", esc(href), esc(label));
    }
    out.push_str("</nav>");
    if let Some((who, action, csrf)) = &frame.signed_in {
        let _ = write!(
            out,
            "<form class=\"signout\" method=\"post\" action=\"{}\">{}<span id=\"who\">{}</span> \
             <button type=\"submit\">Sign out</button></form>",
            esc(action),
            csrf_field(csrf),
            esc(who)
        );
    }
    let _ = write!(
        out,
        "</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    out
}

/// The hidden CSRF input every form carries.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A one-button form posting to `action` (approve, reject, regenerate…).
pub fn button_form(action: &str, csrf: &str, label: &str, id: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}<button type=\"submit\" id=\"{}\">{}</button></form>",
        esc(action),
        csrf_field(csrf),
        esc(id),
        esc(label)
    )
}

/// "Previous · Page 2 of 5 · Next" links, `base` being the page's URL with its other
/// query parameters (ending in `?` or `&`); nothing when there is one page.
pub fn pager(base: &str, page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let link = |p: usize, rel: &str, label: &str| {
        format!(
            "<a href=\"{}page={p}\" rel=\"{rel}\">{label}</a>",
            esc(base)
        )
    };
    let mut out = String::from("<nav class=\"pages\">");
    if page > 1 {
        out.push_str(&link(page - 1, "prev", "Previous"));
    }
    let _ = write!(out, " Page {page} of {pages} ");
    if page < pages {
        out.push_str(&link(page + 1, "next", "Next"));
    }
    out.push_str("</nav>");
    out
}

/// "Range: 1h 24h 7d 30d" as links, the current one marked.
pub fn range_links(ranges: &[&str], current: &str) -> String {
    let mut out = String::from("<p class=\"ranges\">Range: ");
    for r in ranges {
        let class = if *r == current { " class=\"on\"" } else { "" };
        let _ = write!(out, "<a{class} href=\"?range={r}\">{r}</a> ");
    }
    out.push_str("</p>");
    out
}

/// A notice box: `kind` is `ok`, `warn` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {kind}\" role=\"status\">{}</p>",
        esc(text)
    )
}

/// A `<table>` from a header row and rows of cells that are already HTML.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A line chart of `points` (x ascending, y ≥ 0) as inline SVG, `width`×`height` px,
/// with its largest value labelled. No script, no external asset.
pub fn line_chart(label: &str, points: &[(f64, f64)], width: u32, height: u32) -> String {
    let mut out = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\">",
        esc(label),
        esc(label)
    );
    let (w, h) = (f64::from(width), f64::from(height) - 14.0);
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{h}\" class=\"plot\"/>"
    );
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let span = (last.0 - first.0).max(1.0);
        let top = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9);
        let y_of = |y: f64| h - 1.0 - y / top * (h - 4.0);
        if points.len() == 1 {
            // one minute: a dot in the middle (a line needs two)
            let _ = write!(
                out,
                "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"/>",
                w / 2.0,
                y_of(first.1)
            );
        } else {
            out.push_str("<polyline class=\"line\" points=\"");
            for (x, y) in points {
                let px = (x - first.0) / span * (w - 2.0) + 1.0;
                let _ = write!(out, "{px:.1},{:.1} ", y_of(*y));
            }
            out.push_str("\"/>");
        }
        let _ = write!(
            out,
            "<text x=\"2\" y=\"{}\" class=\"axis\">max {}</text>",
            h + 12.0,
            short_number(top)
        );
    } else {
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{}\" class=\"axis\">no data</text>",
            h / 2.0
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// A number for a chart label: integers as such, others with two decimals.
pub fn short_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn a_page_escapes_its_title_and_carries_no_script() {
        let frame = Frame {
            site: "Dev <portal>".into(),
            home: "/portal",
            nav: vec![("APIs".into(), "/portal/apis".into())],
            signed_in: Some(("a@b".into(), "/portal/signout".into(), "tok".into())),
            stylesheet: "/portal/assets/style.css",
            theme: None,
            logo: None,
        };
        let p = page(&frame, "<script>x</script>", "<p>ok</p>");
        assert!(p.contains("<h1>&lt;script&gt;x&lt;/script&gt;</h1>"));
        assert!(p.contains("Dev &lt;portal&gt;"));
        assert!(p.contains("name=\"csrf\" value=\"tok\""));
        assert!(!p.contains("<script"));
    }

    #[test]
    fn charts_scale_to_their_box() {
        let svg = line_chart("calls", &[(0.0, 0.0), (60.0, 10.0)], 200, 100);
        assert!(svg.contains("points=\"1.0,85.0 199.0,3.0 \""), "{svg}");
        assert!(svg.contains("max 10"));
        assert!(line_chart("calls", &[], 200, 100).contains("no data"));
        assert!(line_chart("calls", &[(60.0, 2.0)], 200, 100)
            .contains("<circle class=\"dot\" cx=\"100.0\" cy=\"3.0\" r=\"3\"/>"));
    }
}
