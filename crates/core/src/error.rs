//! How errors are shown: [`Chain`] joins an error with its sources for logs and the status
//! row, and [`first_line`] keeps a parser's message to one line. The bottom of the imports:
//! every layer shows its errors through these and this module imports nothing of the crate.

/// Shows an error with its sources, `outer: inner: innermost`, for logs and the status row.
/// Each error keeps its source (`#[source]`); this is the one place that joins them.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let s = e.to_string();
            // Some errors already print their source's text; show each text once.
            if !s.is_empty() && !shown.ends_with(&s) {
                shown.push_str(": ");
                shown.push_str(&s);
            }
            next = e.source();
        }
        f.write_str(&shown)
    }
}

/// The first line of a message: sonic-rs appends a snippet of the input on further lines, and
/// errors here are one line.
pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::Chain(&e).to_string(), "outer: inner");
    }

    #[test]
    fn first_line_drops_the_snippet() {
        assert_eq!(super::first_line("invalid JSON at 3\n  {\"a\":\n  ^"), "invalid JSON at 3");
        assert_eq!(super::first_line(""), "");
    }
}
