//! Text the reports quote from others (object names, helm's output, API errors, log
//! lines, webhook messages, and anything a `runs.json` given to `merge-reports` holds),
//! made safe for each format: control characters shown instead of sent to a terminal
//! or an XML parser, Markdown that cannot break its table or code block, HTML that
//! cannot open a tag or leave an attribute. Credentials are removed earlier, when the
//! report is built ([`crate::redact`]).

use std::borrow::Cow;

/// `s` with every control character except newline and tab written as `\u{1b}`: an
/// escape sequence in helm's output colours no one's terminal when the report is
/// printed, and NUL, BEL or backspace never reach a format that cannot hold them.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Free text on one line of Markdown (a table cell, a list item, a heading): newlines
/// become spaces, and what Markdown or HTML would act on (`|`, `*`, `_`, `[`, `]`, `\`,
/// `<`) is escaped, so a cell never ends early and quoted text never becomes a link,
/// emphasis or a tag. Backticks stay: the reports' own texts quote commands with them
/// (`` `helm uninstall` ``), and a stray one can only make code of the rest of its
/// line, whose `|` and `<` are escaped all the same.
pub fn md_inline(s: &str) -> String {
    let s = printable(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '|' | '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
    out
}

/// Text inside a Markdown code span (`` `...` ``) on one line: a backtick would end the
/// span and a `|` the table cell, and a newline the line, so they become `'`, `\|`
/// and a space (a code span shows everything else as it is).
pub fn md_code(s: &str) -> String {
    printable(s)
        .chars()
        .map(|c| match c {
            '`' => "'".to_string(),
            '|' => "\\|".to_string(),
            '\n' | '\r' => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A fenced Markdown code block holding `s` as it is: the fence is longer than any run
/// of backticks inside, so the text cannot close it and go on as Markdown.
pub fn md_block(s: &str) -> String {
    let s = printable(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{s}\n{fence}")
}

/// Text for HTML, in an element or in a double- or single-quoted attribute.
pub fn html(s: &str) -> String {
    let s = printable(s);
    let mut out = String::with_capacity(s.len() + 16);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_gets_text_it_cannot_misread() {
        assert_eq!(
            printable("a\u{1b}[31mb\u{0}\u{7}\u{8}\n\t"),
            "a\\u{1b}[31mb\\u{0}\\u{7}\\u{8}\n\t"
        );
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            md_inline("a|b\nc `d` *e* <f> [l](j:x)"),
            "a\\|b c `d` \\*e\\* &lt;f> \\[l\\](j:x)"
        );
        assert_eq!(md_code("a`b|c\nd"), "a'b\\|c d");
        assert_eq!(md_block("x\n```\ny"), "````\nx\n```\ny\n````");
        assert_eq!(md_block("x"), "```\nx\n```");
        assert_eq!(
            html("<a href='x' title=\"y\">&"),
            "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;"
        );
    }
}
