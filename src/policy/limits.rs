//! The limits of a policy file (SPEC §8): at most 1 MiB and 64 levels deep,
//! so that loading one takes time linear in its size.
//!
//! Depth is counted exactly by the located tree ([`super::locate`]) as it
//! is built, but yaml-rust2's scanner looks ahead over a whole flow
//! collection before it hands out the collection's first event, and each
//! step of that look-ahead walks every open flow level: 200 KB of `[[[[…`
//! took minutes before the tree saw a single level. So [`check_flow_depth`]
//! runs first, one pass over the bytes that counts flow levels (`[`, `{`)
//! the way YAML does — not inside quotes, comments, block scalars, or plain
//! scalars of the block context — and stops at the first one too deep.

/// The largest policy file, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The deepest nesting of mappings and sequences (the root mapping is 1).
pub const MAX_DEPTH: usize = 64;

/// The message of a file larger than [`MAX_FILE_BYTES`].
pub(crate) fn too_big(len: Option<u64>) -> String {
    let size = len.map_or_else(String::new, |n| format!(" ({n} bytes)"));
    format!(
        "the policy file is larger than 1 MiB{size}; a policy file may be at most 1 MiB \
         ({MAX_FILE_BYTES} bytes)"
    )
}

/// The message of a node nested deeper than [`MAX_DEPTH`].
pub(crate) fn too_deep() -> String {
    format!(
        "nested more than {MAX_DEPTH} levels deep; a policy file may nest mappings and \
         sequences at most {MAX_DEPTH} levels"
    )
}

/// The line and column (1-based, in characters) of byte `at` of `text`.
pub(crate) fn position(text: &[u8], at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = 1 + before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, col)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Single,
    Double,
    Comment,
}

fn is_blank(b: Option<&u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Refuse a flow collection opened more than [`MAX_DEPTH`] levels deep, in
/// one pass over `text`.
///
/// # Errors
/// The byte offset of the first `[` or `{` too deep.
pub(crate) fn check_flow_depth(text: &str) -> Result<(), usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut mode = Mode::Normal;
    // A node may start here (after indentation, `- `, `? `, `: `, `[`, `,`).
    let mut at_node = true;
    // The previous byte was blank (a `#` then starts a comment).
    let mut after_blank = true;
    // The previous token was a quoted scalar (a `:` right after is a value
    // indicator in flow context, JSON-style).
    let mut after_quote = false;
    let mut line_start = true;
    let mut indent = 0usize;
    // While skipping a block scalar: the indentation of its header's line.
    let mut block: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            if mode == Mode::Comment {
                mode = Mode::Normal;
            }
            line_start = true;
            indent = 0;
            after_blank = true;
            if mode == Mode::Normal && depth == 0 {
                at_node = true;
            }
            i += 1;
            continue;
        }
        if line_start && mode == Mode::Normal && depth == 0 {
            if let Some(header) = block {
                let n = b[i..].iter().take_while(|&&x| x == b' ').count();
                let rest = b.get(i + n);
                if n > header || matches!(rest, None | Some(b'\n' | b'\r')) {
                    // A line of the block scalar: skip it whole.
                    i += b[i..]
                        .iter()
                        .position(|&x| x == b'\n')
                        .unwrap_or(b.len() - i);
                    continue;
                }
                block = None;
            }
        }
        match mode {
            Mode::Comment => {}
            Mode::Single => {
                if c == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 1;
                    } else {
                        mode = Mode::Normal;
                        after_quote = true;
                    }
                }
            }
            Mode::Double => {
                if c == b'\\' && b.get(i + 1) != Some(&b'\n') {
                    i += 1;
                } else if c == b'"' {
                    mode = Mode::Normal;
                    after_quote = true;
                }
            }
            Mode::Normal if matches!(c, b' ' | b'\t' | b'\r') => {
                if line_start && c == b' ' {
                    indent += 1;
                }
                after_blank = true;
                i += 1;
                continue;
            }
            Mode::Normal => {
                let quoted_before = std::mem::replace(&mut after_quote, false);
                let next = b.get(i + 1);
                if c == b'#' && after_blank {
                    mode = Mode::Comment;
                } else if depth == 0 && line_start && is_document_marker(&b[i..]) {
                    i += 3;
                    at_node = true;
                    line_start = false;
                    after_blank = false;
                    continue;
                } else if depth == 0 && !at_node {
                    // Inside a plain scalar of the block context: brackets
                    // and quotes are text; `: ` starts a value.
                    if c == b':' && is_blank(next) {
                        at_node = true;
                    }
                } else if matches!(c, b'[' | b'{') {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(i);
                    }
                    at_node = true;
                } else if depth > 0 && matches!(c, b']' | b'}') {
                    depth -= 1;
                    at_node = false;
                } else if (depth > 0 && c == b',')
                    || c == b':'
                        && (is_blank(next)
                            || quoted_before
                            || (depth > 0
                                && matches!(next, Some(b',' | b'[' | b']' | b'{' | b'}'))))
                {
                    at_node = true;
                } else if at_node {
                    match c {
                        b'\'' => mode = Mode::Single,
                        b'"' => mode = Mode::Double,
                        b'-' | b'?' if is_blank(next) => {}
                        b'&' | b'!' => {
                            // Anchor or tag: the node follows it.
                            while i + 1 < b.len() && !is_blank(b.get(i + 1)) {
                                i += 1;
                            }
                        }
                        b'|' | b'>' if depth == 0 => {
                            block = Some(indent);
                            mode = Mode::Comment;
                        }
                        _ => at_node = false,
                    }
                }
            }
        }
        line_start = false;
        after_blank = false;
        i += 1;
    }
    Ok(())
}

/// `---` or `...` followed by a blank: a document marker at a line start.
fn is_document_marker(rest: &[u8]) -> bool {
    (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_blank(rest.get(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(n: usize) -> String {
        format!("x: {}{}\n", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn counts_flow_levels_and_names_the_first_too_deep() {
        assert!(check_flow_depth(&deep(MAX_DEPTH)).is_ok());
        let at = |t: &str| check_flow_depth(t).map_err(|i| position(t.as_bytes(), i));
        assert_eq!(at(&deep(MAX_DEPTH + 1)), Err((1, 4 + MAX_DEPTH)));
        let mixed = format!("a: 1\nb:\n  - {}\n", "{k: [".repeat(40));
        assert_eq!(at(&mixed), Err((3, 5 + 5 * 32)));
        let multi = format!("a: [\n{}", "[\n".repeat(70));
        assert_eq!(at(&multi), Err((65, 1)));
    }

    #[test]
    fn brackets_that_open_no_collection_are_not_counted() {
        let many = "[".repeat(200);
        let texts = [
            format!("name: a{many}\n"),
            format!("name: '{many}'\n"),
            format!("name: \"{many}\\\"{many}\"\n"),
            format!("name: it's {many}\n"),
            format!("# {many}\nname: x # {many}\n"),
            format!("text: |\n  {many}\n\n   {many}\nnext: 1\n"),
            format!("text: >-\n  {many}\n"),
            format!("list: [a'b, \"x{many}\", 'y{many}']\n"),
            format!("url: http://x/{many}\n"),
            format!("- a{many}\n- b: c{many}\n"),
        ];
        for t in texts {
            assert!(check_flow_depth(&t).is_ok(), "{t}");
        }
    }

    #[test]
    fn collections_after_properties_markers_and_quoted_keys_are_counted() {
        let open = "[".repeat(MAX_DEPTH + 1);
        for t in [
            format!("x: &a {open}"),
            format!("x: !!seq {open}"),
            format!("--- {open}"),
            format!("\"k\": {open}"),
            format!("x: {{\"k\":{open}"),
            format!("- - {open}"),
            format!("? {open}"),
            format!("text: |\n  a\nx: {open}"),
        ] {
            assert!(check_flow_depth(&t).is_err(), "{t}");
        }
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(position(b"ab\ncd", 4), (2, 2));
        assert_eq!(position("é[".as_bytes(), 2), (1, 2));
        assert_eq!(position(b"x", 0), (1, 1));
    }
}
