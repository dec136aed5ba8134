//! Request paths: the canonical-path check of SPEC §2.3 and the compiled
//! `paths` globs that rules match against the very same raw string.
//!
//! Why refuse rather than normalise: if the gate decided on a normalised path
//! and the router saw the raw one (or the reverse), `/api/../login` or
//! `/%61pi/ws` could be decided as one route and served as another. A path
//! is accepted only when it has a single spelling, so the rules and warp's
//! router see the same string.

/// Why a path is not canonical, for `policy explain`; `None` when it is.
pub fn non_canonical(raw: &str) -> Option<&'static str> {
    scan(raw, |_| ()).err()
}

/// Run `f` on the segments of the canonical path `raw` (its query and
/// fragment left out, split as [`segments`] splits), or say why `raw` is
/// not canonical. One pass over the bytes checks the path and splits it
/// (this runs on every request); the segments are kept on the stack when
/// there are few, so no rule splits the path again.
pub fn canonical_segments<R>(raw: &str, f: impl FnOnce(&[&str]) -> R) -> Result<R, &'static str> {
    let mut inline = [""; INLINE_SEGMENTS];
    let mut n = 0;
    let mut spilled: Vec<&str> = Vec::new();
    scan(raw, |seg| {
        if n < INLINE_SEGMENTS {
            inline[n] = seg;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&inline);
            }
            spilled.push(seg);
        }
        n += 1;
    })?;
    Ok(if n <= INLINE_SEGMENTS {
        f(&inline[..n])
    } else {
        f(&spilled)
    })
}

/// Check that `raw` is canonical, up to its first `?` or `#`, and hand its
/// segments to `seg` on the way (one trailing `/` dropped, `/` being the one
/// empty segment: see [`segments`]). A malformed byte is reported at once;
/// a malformed segment only if no byte is.
fn scan<'p>(raw: &'p str, mut seg: impl FnMut(&'p str)) -> Result<(), &'static str> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("does not start with '/'");
    }
    let mut bad_segment = None;
    let mut start = 1;
    let mut i = 1;
    let end = loop {
        let Some(&c) = bytes.get(i) else {
            break i;
        };
        match BYTE_CLASS[usize::from(c)] {
            PLAIN => i += 1,
            SLASH => {
                bad_segment = bad_segment.or_else(|| segment_error(&bytes[start..i], false));
                // Every byte up to `i` is ASCII or part of a whole UTF-8
                // sequence: `/` is never inside one.
                seg(&raw[start..i]);
                start = i + 1;
                i += 1;
            }
            PERCENT => {
                // Two hex digits exactly: `from_str_radix` alone would also
                // take a sign (`%+5`).
                let hex = match bytes.get(i + 1..i + 3) {
                    Some(&[h, l]) => hex_value(h).zip(hex_value(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match hex {
                    None => return Err("contains a malformed %-escape"),
                    Some(b'/') => return Err("contains an encoded '/' (%2F)"),
                    Some(b'\\') => return Err("contains an encoded '\\' (%5C)"),
                    Some(0) => return Err("contains an encoded NUL (%00)"),
                    Some(c) if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => {
                        return Err("percent-encodes an unreserved character (such as %2E or %61)")
                    }
                    Some(_) => i += 3,
                }
            }
            END => break i,
            _ if c == b'\\' => return Err("contains a raw '\\'"),
            _ if c == 0 => return Err("contains a NUL byte"),
            _ => return Err("contains a control character"),
        }
    };
    if let Some(why) = bad_segment.or_else(|| segment_error(&bytes[start..end], true)) {
        return Err(why);
    }
    // The last segment, unless it is the empty one after a trailing `/`.
    if start < end || start == 1 {
        seg(&raw[start..end]);
    }
    Ok(())
}

const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const BAD: u8 = 3;
/// `?` or `#`: the path ends here.
const END: u8 = 4;

/// What [`non_canonical`] makes of each byte: a table, so the common byte
/// costs one load and one compare.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = BAD;
        c += 1;
    }
    t[0x7f] = BAD;
    t[b'\\' as usize] = BAD;
    t[b'/' as usize] = SLASH;
    t[b'%' as usize] = PERCENT;
    t[b'?' as usize] = END;
    t[b'#' as usize] = END;
    t
};

/// What is wrong with one segment of a path (`last`: the one after the
/// final `/`, which may be empty: `/a/`).
fn segment_error(seg: &[u8], last: bool) -> Option<&'static str> {
    match seg {
        b"" if !last => Some("has an empty segment ('//')"),
        b"." | b".." => Some("has a '.' or '..' segment"),
        _ => None,
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The path without anything from the first `?` or `#` on: the query and the
/// fragment are never part of what rules match.
pub fn strip_query(raw: &str) -> &str {
    match raw.bytes().position(|b| b == b'?' || b == b'#') {
        Some(i) => &raw[..i],
        None => raw,
    }
}

/// The segments of a canonical path: `/` is `[""]`, `/a/` is `["a"]`.
///
/// Why drop one trailing `/`: warp routes `/api/policy/` to the
/// `/api/policy` route (its `path::end` accepts the slash), so the rules must
/// see the two as the same path, or a trailing slash would walk past a rule
/// written for the route. Globs are split the same way (`/docs/` is `/docs`).
pub fn segments(path: &str) -> impl Iterator<Item = &str> + Clone {
    let rest = path.get(1..).unwrap_or("");
    rest.strip_suffix('/').unwrap_or(rest).split('/')
}

/// One compiled segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GSeg {
    /// Exactly this segment.
    Lit(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `*.js`, `app-*`: one segment; `*` stands for any characters in it.
    Wild(Vec<String>),
    /// `**`: any number of segments, zero included.
    Deep,
}

/// A compiled `paths` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    segs: Vec<GSeg>,
    /// How many segments a matching path has: at least `min` (one for each
    /// segment of the glob but `**`), and at most `max` when there is no
    /// `**`. Most globs of a policy miss most paths on this alone.
    min: usize,
    max: Option<usize>,
}

impl PathGlob {
    /// Compile a glob.
    ///
    /// # Errors
    /// A glob that could never match a canonical path.
    pub fn parse(glob: &str) -> Result<PathGlob, String> {
        if !glob.starts_with('/') {
            return Err(format!(
                "{glob:?} does not start with '/' (expected a path such as /api/**)"
            ));
        }
        if glob.contains(['?', '#']) {
            return Err(format!(
                "{glob:?} contains '?' or '#' (queries and fragments are never matched; expected a path)"
            ));
        }
        if let Some(why) = non_canonical(glob) {
            return Err(format!(
                "{glob:?} {why}, so it could never match a request (paths must be canonical)"
            ));
        }
        let mut segs = Vec::new();
        for seg in segments(glob) {
            let g = match seg {
                "**" => GSeg::Deep,
                "*" => GSeg::One,
                s if s.contains("**") => {
                    return Err(format!(
                        "{glob:?}: '**' must be a whole segment (as in /assets/**)"
                    ))
                }
                s if s.contains('*') => GSeg::Wild(s.split('*').map(str::to_owned).collect()),
                s => GSeg::Lit(s.to_owned()),
            };
            // `**/**` is `**`.
            if !(g == GSeg::Deep && segs.last() == Some(&GSeg::Deep)) {
                segs.push(g);
            }
        }
        let min = segs.iter().filter(|g| **g != GSeg::Deep).count();
        let max = (!segs.contains(&GSeg::Deep)).then_some(min);
        Ok(PathGlob { segs, min, max })
    }

    /// Whether the canonical path's segments match. Greedy with one
    /// backtrack point (the last `**`), linear in practice: every other
    /// segment kind consumes exactly one path segment.
    pub fn matches(&self, path: &[&str]) -> bool {
        if path.len() < self.min || self.max.is_some_and(|max| path.len() > max) {
            return false;
        }
        let pat = &self.segs[..];
        let (mut pi, mut si) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            match (pat.get(pi), path.get(si)) {
                (Some(GSeg::Deep), _) => {
                    pi += 1;
                    backtrack = Some((pi, si));
                    continue;
                }
                (Some(g), Some(seg)) if seg_matches(g, seg) => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last `**` swallow one more segment.
            match backtrack.as_mut() {
                Some((bpi, bsi)) if *bsi < path.len() => {
                    *bsi += 1;
                    (pi, si) = (*bpi, *bsi);
                }
                _ => return false,
            }
        }
    }
}

/// Most paths have fewer segments than this; longer ones spill to the heap.
const INLINE_SEGMENTS: usize = 16;

fn seg_matches(g: &GSeg, seg: &str) -> bool {
    match g {
        GSeg::Lit(l) => l == seg,
        GSeg::One => !seg.is_empty(),
        GSeg::Wild(parts) => wild(parts, seg),
        GSeg::Deep => true,
    }
}

/// `parts` are the pieces between `*`s: the first must be a prefix, the last
/// a suffix, the middle ones appear in order.
fn wild(parts: &[String], s: &str) -> bool {
    let (first, last) = (&parts[0], &parts[parts.len() - 1]);
    if s.len() < first.len() + last.len()
        || !s.starts_with(first.as_str())
        || !s.ends_with(last.as_str())
    {
        return false;
    }
    let mut mid = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match mid.find(p.as_str()) {
            Some(i) => mid = &mid[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The HTTP methods a rule may name, as bits of a mask.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// The bit of a method, 0 for one that no rule can name.
#[inline]
pub fn method_bit(m: &str) -> u16 {
    METHODS.iter().position(|k| *k == m).map_or(0, |i| 1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, path: &str) -> bool {
        let g = PathGlob::parse(glob).unwrap();
        canonical_segments(path, |segs| g.matches(segs)).unwrap()
    }

    /// The per-request splitter agrees with [`segments`], also past the
    /// inline capacity.
    #[test]
    fn canonical_segments_splits_like_segments() {
        let long = format!("/{}", vec!["s"; INLINE_SEGMENTS + 3].join("/"));
        for path in [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/api/status",
            "/a/b/",
            "/é/ü/",
            &long,
        ] {
            let want: Vec<&str> = segments(path).collect();
            canonical_segments(path, |got| assert_eq!(got, &want[..], "{path}")).unwrap();
        }
    }

    #[test]
    fn canonical_paths() {
        for ok in [
            "/",
            "/api/",
            "/api/ws",
            "/a%20b",
            "/%C3%A9",
            "/a?x=/../",
            "/a#//",
            "/x/%25",
        ] {
            assert_eq!(non_canonical(ok), None, "{ok}");
        }
        for bad in [
            "",
            "api",
            "//",
            "/a//b",
            "/./a",
            "/a/..",
            "/a/../b",
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a%5cb",
            "/a\\b",
            "/a\0b",
            "/a%00",
            "/%2e%2e/x",
            "/%2E",
            "/%61pi",
            "/a%zz",
            "/a%4",
            "/a%+5",
            "/a%-1",
        ] {
            assert!(non_canonical(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn globs() {
        assert!(m("/healthz", "/healthz"));
        // The router serves `/healthz/` as `/healthz`: so do the rules.
        assert!(m("/healthz", "/healthz/"));
        assert!(m("/docs/", "/docs") && m("/docs/", "/docs/"));
        assert!(m("/", "/") && !m("/", "/x/"));
        assert!(!m("/healthz", "/healthzz"));
        assert!(m("/api/*", "/api/ws"));
        assert!(!m("/api/*", "/api/"));
        assert!(!m("/api/*", "/api/a/b"));
        assert!(m("/api/**", "/api"));
        assert!(m("/api/**", "/api/"));
        assert!(m("/api/**", "/api/a/b/c"));
        assert!(!m("/api/**", "/apix"));
        assert!(m("/**", "/"));
        assert!(m("/**/ws", "/api/x/ws"));
        assert!(m("/**/ws", "/ws"));
        assert!(!m("/**/ws", "/api/wss"));
        assert!(m("/a/**/b/**/c", "/a/x/b/y/b/z/c"));
        assert!(m("/assets/*.js", "/assets/app.js"));
        assert!(!m("/assets/*.js", "/assets/app.css"));
        assert!(!m("/assets/*.js", "/assets/x/app.js"));
        assert!(m("/assets/app-*-min.*", "/assets/app-1.2-min.js"));
        let long = format!("/a{}", "/x".repeat(40));
        assert!(m("/a/**", &long) && m("/**/x", &long) && !m("/**/y", &long));
    }

    #[test]
    fn bad_globs() {
        for bad in ["api/**", "/a//b", "/a/../b", "/a**", "/a?b", "/%2e"] {
            assert!(PathGlob::parse(bad).is_err(), "{bad}");
        }
    }
}
