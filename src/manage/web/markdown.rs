//! The Markdown of the portal's pages as HTML: headings, paragraphs, emphasis and strong,
//! inline code and fenced code blocks, bullet and numbered lists, block quotes,
//! horizontal rules and links. Everything is escaped; raw HTML in the source is shown as
//! text, and a link keeps only an http(s), mailto or same-site target, so a page cannot
//! carry script whatever its author writes. Line by line, linear in the input.
//! Must not touch: anything but text.

use std::fmt::Write as _;

use super::html::esc;

/// The open block a line continues.
enum Block {
    None,
    Paragraph(Vec<String>),
    List { ordered: bool, items: Vec<String> },
    Quote(Vec<String>),
    Code(Vec<String>),
}

pub fn to_html(source: &str) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut block = Block::None;
    for line in source.lines() {
        if let Block::Code(lines) = &mut block {
            if line.trim_start().starts_with("```") {
                let _ = write!(out, "<pre><code>{}</code></pre>", esc(&lines.join("\n")));
                block = Block::None;
            } else {
                lines.push(line.to_string());
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            close(
                &mut out,
                std::mem::replace(&mut block, Block::Code(Vec::new())),
            );
            continue;
        }
        if trimmed.is_empty() {
            close(&mut out, std::mem::replace(&mut block, Block::None));
            continue;
        }
        let hashes = trimmed.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            close(&mut out, std::mem::replace(&mut block, Block::None));
            let _ = write!(
                out,
                "<h{n}>{}</h{n}>",
                inline(trimmed[hashes..].trim()),
                n = hashes + 1
            );
            continue;
        }
        if matches!(trimmed, "---" | "***" | "___") {
            close(&mut out, std::mem::replace(&mut block, Block::None));
            out.push_str("<hr>");
            continue;
        }
        let bullet = ["- ", "* ", "+ "]
            .iter()
            .find_map(|m| trimmed.strip_prefix(m));
        let numbered = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, rest)| rest);
        if let Some((ordered, item)) = bullet.map(|i| (false, i)).or(numbered.map(|i| (true, i))) {
            match &mut block {
                Block::List { ordered: o, items } if *o == ordered => items.push(item.to_string()),
                _ => {
                    close(
                        &mut out,
                        std::mem::replace(
                            &mut block,
                            Block::List {
                                ordered,
                                items: vec![item.to_string()],
                            },
                        ),
                    );
                }
            }
            continue;
        }
        if let Some(quoted) = trimmed.strip_prefix('>') {
            match &mut block {
                Block::Quote(lines) => lines.push(quoted.trim().to_string()),
                _ => close(
                    &mut out,
                    std::mem::replace(&mut block, Block::Quote(vec![quoted.trim().to_string()])),
                ),
            }
            continue;
        }
        match &mut block {
            Block::Paragraph(lines) | Block::Quote(lines) => lines.push(trimmed.to_string()),
            Block::List { items, .. } if line.starts_with([' ', '\t']) => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(trimmed);
                }
            }
            _ => close(
                &mut out,
                std::mem::replace(&mut block, Block::Paragraph(vec![trimmed.to_string()])),
            ),
        }
    }
    close(&mut out, block);
    out
}

fn close(out: &mut String, block: Block) {
    match block {
        Block::None => {}
        Block::Paragraph(lines) => {
            let _ = write!(out, "<p>{}</p>", inline(&lines.join(" ")));
        }
        Block::Quote(lines) => {
            let _ = write!(
                out,
                "<blockquote><p>{}</p></blockquote>",
                inline(&lines.join(" "))
            );
        }
        Block::List { ordered, items } => {
            let tag = if ordered { "ol" } else { "ul" };
            let _ = write!(out, "<{tag}>");
            for i in items {
                let _ = write!(out, "<li>{}</li>", inline(&i));
            }
            let _ = write!(out, "</{tag}>");
        }
        // a fence left open runs to the end of the page
        Block::Code(lines) => {
            let _ = write!(out, "<pre><code>{}</code></pre>", esc(&lines.join("\n")));
        }
    }
}

/// A link target that is safe to put in an `href`.
fn safe_target(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("mailto:")
        || (url.starts_with('/') && !url.starts_with("//"))
        || url.starts_with('#')
}

/// Whether the `*` or `_` at `i` opens or closes emphasis: it closes an open one of the
/// same kind, or opens one before a non-space when another follows. `_` inside a word
/// (snake_case) is a letter.
fn emphasis_turns(chars: &[char], i: usize, open: Option<char>, another_follows: bool) -> bool {
    let c = chars[i];
    let word = |j: Option<usize>| {
        j.and_then(|j| chars.get(j))
            .is_some_and(|x| x.is_alphanumeric())
    };
    if c == '_' && (word(i.checked_sub(1)) && word(Some(i + 1))) {
        return false;
    }
    match open {
        Some(o) => o == c,
        None => chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) && another_follows,
    }
}

/// Inline spans: `code`, **strong**, *em* / _em_, [text](url). Escapes everything else.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let find = |from: usize, pat: &[char]| -> Option<usize> {
        (from..chars.len().saturating_sub(pat.len() - 1)).find(|&j| chars[j..j + pat.len()] == *pat)
    };
    let mut strong = false;
    let mut em: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '`' => {
                if let Some(end) = find(i + 1, &['`']) {
                    let code: String = chars[i + 1..end].iter().collect();
                    let _ = write!(out, "<code>{}</code>", esc(&code));
                    i = end + 1;
                    continue;
                }
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(if strong { "</strong>" } else { "<strong>" });
                strong = !strong;
                i += 2;
                continue;
            }
            '*' | '_' if emphasis_turns(&chars, i, em, find(i + 1, &[c]).is_some()) => {
                out.push_str(if em.is_some() { "</em>" } else { "<em>" });
                em = if em.is_some() { None } else { Some(c) };
                i += 1;
                continue;
            }
            '[' => {
                let link = find(i + 1, &[']', '('])
                    .and_then(|mid| find(mid + 2, &[')']).map(|end| (mid, end)));
                if let Some((mid, end)) = link {
                    let label: String = chars[i + 1..mid].iter().collect();
                    let target: String = chars[mid + 2..end].iter().collect();
                    let target = target.trim();
                    if safe_target(target) {
                        let _ = write!(out, "<a href=\"{}\">{}</a>", esc(target), esc(&label));
                    } else {
                        out.push_str(&esc(&label));
                    }
                    i = end + 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push_str(&esc(&c.to_string()));
        i += 1;
    }
    if em.is_some() {
        out.push_str("</em>");
    }
    if strong {
        out.push_str("</strong>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn blocks_and_spans() {
        let md = "# Getting started\n\nCall the **orders** API with `curl`:\nit is *fast*.\n\n- one\n- two\n  continued\n\n1. first\n2. second\n\n> quoted\n\n```\n<b>raw</b>\n```\n---";
        assert_eq!(
            to_html(md),
            "<h2>Getting started</h2><p>Call the <strong>orders</strong> API with <code>curl</code>: it is <em>fast</em>.</p>\
             <ul><li>one</li><li>two continued</li></ul><ol><li>first</li><li>second</li></ol>\
             <blockquote><p>quoted</p></blockquote><pre><code>&lt;b&gt;raw&lt;/b&gt;</code></pre><hr>"
        );
    }

    #[test]
    fn html_is_text_and_only_safe_links_are_links() {
        assert_eq!(
            to_html("<script>alert(1)</script> [x](javascript:alert(1)) [docs](/portal) [y](https://a.example/?q=\"1\")"),
            "<p>&lt;script&gt;alert(1)&lt;/script&gt; x) <a href=\"/portal\">docs</a> <a href=\"https://a.example/?q=&quot;1&quot;\">y</a></p>"
        );
        assert_eq!(
            to_html("snake_case_name and 2 * 3"),
            "<p>snake_case_name and 2 * 3</p>"
        );
    }
}
