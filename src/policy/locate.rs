//! Where each node of a policy file sits, so that every error can name a
//! line and a column.
//!
//! serde_yaml reports positions for syntax, type and unknown-field errors,
//! but the interesting errors (an unknown network name, a CIDR with host bits
//! set, a malformed hash) are found after deserialisation, when the positions
//! are gone. So the text is parsed a second time with yaml-rust2's marked
//! event API into a small tree of [`Node`]s, and a semantic error carries the
//! key path (`rules[2].from[0]`) that is looked up here.
//!
//! The tree also catches what serde silently accepts: a key given twice in
//! one mapping (serde keeps the last one, so a second `home:` network would
//! quietly replace the first) and a key with no value (`from:` alone would
//! deserialise to "absent", which matches every address: fail open).

use std::collections::{HashMap, HashSet};
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::limits::{check_flow_depth, MAX_DEPTH};

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a node, displayed as `rules[2].from[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The root path.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    /// This path with a key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        KeyPath(v)
    }
    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar; `null` is true for a plain empty, `~` or `null` value.
    Scalar {
        null: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, String, Node)>),
}

/// A node and where it starts (1-based line and column).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub col: usize,
    pub kind: Kind,
}

/// The located tree of one document.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    root: Option<Node>,
}

/// Why the tree could not be built.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// A YAML syntax error: line, column, message.
    Syntax(usize, usize, String),
    /// A mapping or sequence deeper than [`MAX_DEPTH`]: where it starts.
    TooDeep(usize, usize),
}

enum Open {
    Seq(Node, usize),
    Map(Node, usize, Option<(Node, String)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Anchor id -> whether the anchored node is an empty (null) scalar.
    /// Aliased content is never copied: it was checked where it is written,
    /// and copying would let a "billion laughs" file exhaust memory.
    anchors: HashMap<usize, bool>,
    root: Option<Node>,
    /// Where the first collection deeper than [`MAX_DEPTH`] starts.
    too_deep: Option<(usize, usize)>,
}

fn pos(m: Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, _)) => {
                if let Kind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, pending)) => match pending.take() {
                None => {
                    let text = complex_key_text(&node);
                    // A mapping starts where its first key does: yaml-rust2's
                    // MappingStart mark points past the first key.
                    if let Kind::Map(entries) = &map.kind {
                        if entries.is_empty() {
                            map.line = node.line;
                            map.col = node.col;
                        }
                    }
                    *pending = Some((node, text));
                }
                Some((key, text)) => {
                    if let Kind::Map(entries) = &mut map.kind {
                        entries.push((key, text, node));
                    }
                }
            },
        }
    }
}

/// The text of a key that is not a plain scalar (an alias or a collection):
/// one that can never name a field, so it never matches a path segment.
fn complex_key_text(_node: &Node) -> String {
    "\u{0}complex-key".to_owned()
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let (line, col) = pos(mark);
        match ev {
            Event::Scalar(value, style, anchor, _) => {
                let null = style == TScalarStyle::Plain
                    && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let node = Node {
                    line,
                    col,
                    kind: Kind::Scalar { null },
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, null);
                }
                // Keys need their text: stash it via a mapping-aware push.
                if let Some(Open::Map(_, _, None)) = self.stack.last() {
                    self.push_key(node, value);
                } else {
                    self.push_node(node);
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.too_deep = Some((line, col));
            }
            Event::SequenceStart(anchor, _) => {
                let node = Node {
                    line,
                    col,
                    kind: Kind::Seq(Vec::new()),
                };
                self.stack.push(Open::Seq(node, anchor));
            }
            Event::MappingStart(anchor, _) => {
                let node = Node {
                    line,
                    col,
                    kind: Kind::Map(Vec::new()),
                };
                self.stack.push(Open::Map(node, anchor, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(n, a)) | Some(Open::Map(n, a, _)) => (n, a),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, false);
                }
                self.push_node(node);
            }
            Event::Alias(id) => {
                // An alias of an empty value is itself empty (fail closed).
                let null = self.anchors.get(&id).copied().unwrap_or(false);
                self.push_node(Node {
                    line,
                    col,
                    kind: Kind::Scalar { null },
                });
            }
            _ => {}
        }
    }
}

impl Builder {
    fn push_key(&mut self, node: Node, text: String) {
        if let Some(Open::Map(map, _, pending)) = self.stack.last_mut() {
            if let Kind::Map(entries) = &map.kind {
                if entries.is_empty() {
                    map.line = node.line;
                    map.col = node.col;
                }
            }
            *pending = Some((node, text));
        }
    }
}

impl Doc {
    /// Parse `text` (its first document) into a located tree, refusing
    /// nesting deeper than [`MAX_DEPTH`] as soon as it is seen.
    ///
    /// # Errors
    /// The YAML syntax error, or where the nesting first got too deep.
    pub fn parse(text: &str) -> Result<Doc, ParseError> {
        if let Err(at) = check_flow_depth(text) {
            // Too deep for sure. The first collection too deep may sit
            // earlier (block levels count too): the tree of the text up to
            // here finds it, and its flow levels are few enough to be quick.
            return Err(match build(&text[..=at]) {
                Err(e @ ParseError::TooDeep(..)) => e,
                _ => {
                    let (line, col) = super::limits::position(text.as_bytes(), at);
                    ParseError::TooDeep(line, col)
                }
            });
        }
        build(text).map(|b| Doc { root: b.root })
    }

    /// Refuse keys given twice in one mapping and keys without a value.
    ///
    /// # Errors
    /// The first offending key, with its path, line, column and message.
    pub fn check_keys(&self) -> Result<(), (KeyPath, usize, usize, String)> {
        match &self.root {
            Some(root) => check_node(root, &KeyPath::root()),
            None => Ok(()),
        }
    }

    /// Where the node at `path` starts, or its nearest existing ancestor.
    pub fn locate(&self, path: &KeyPath) -> (usize, usize) {
        self.find(path, false)
    }

    /// Where the key of the node at `path` starts (for errors about a name).
    pub fn locate_key(&self, path: &KeyPath) -> (usize, usize) {
        self.find(path, true)
    }

    fn find(&self, path: &KeyPath, want_key: bool) -> (usize, usize) {
        let Some(mut node) = self.root.as_ref() else {
            return (1, 1);
        };
        let mut at = (node.line, node.col);
        for (i, seg) in path.0.iter().enumerate() {
            let last = i + 1 == path.0.len();
            let next = match (seg, &node.kind) {
                (Seg::Index(n), Kind::Seq(items)) => items.get(*n).map(|n| (n, None)),
                (Seg::Key(k), Kind::Map(entries)) => entries
                    .iter()
                    .rev()
                    .find(|(_, text, _)| text == k)
                    .map(|(key, _, value)| (value, Some(key))),
                _ => None,
            };
            let Some((child, key)) = next else { break };
            node = child;
            at = match key {
                Some(key) if last && want_key => (key.line, key.col),
                // A key with an empty value: point at the key.
                Some(key) if matches!(child.kind, Kind::Scalar { null: true }) => {
                    (key.line, key.col)
                }
                _ => (child.line, child.col),
            };
        }
        at
    }
}

/// Build the tree of the first document of `text`, event by event, and
/// stop at the first collection deeper than [`MAX_DEPTH`].
fn build(text: &str) -> Result<Builder, ParseError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let (line, col) = pos(*e.marker());
            ParseError::Syntax(line, col, e.info().to_owned())
        })?;
        let end = matches!(ev, Event::DocumentEnd | Event::StreamEnd);
        builder.on_event(ev, mark);
        if let Some((line, col)) = builder.too_deep {
            return Err(ParseError::TooDeep(line, col));
        }
        if end {
            return Ok(builder);
        }
    }
}

fn check_node(node: &Node, path: &KeyPath) -> Result<(), (KeyPath, usize, usize, String)> {
    match &node.kind {
        Kind::Scalar { .. } => Ok(()),
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                check_node(item, &path.index(i))?;
            }
            Ok(())
        }
        Kind::Map(entries) => {
            // A set, not a scan of the keys before each one: a mapping of
            // 40,000 networks would cost 800 million comparisons.
            let mut seen = HashSet::with_capacity(entries.len());
            for (key, text, value) in entries {
                let here = path.key(text);
                if !seen.insert(text.as_str()) {
                    let what = match path.0.as_slice() {
                        [Seg::Key(k)] if k == "networks" => "network",
                        _ => "key",
                    };
                    return Err((
                        here,
                        key.line,
                        key.col,
                        format!("duplicate {what} {text:?} (each name may be given once)"),
                    ));
                }
                if matches!(value.kind, Kind::Scalar { null: true }) {
                    return Err((
                        here,
                        key.line,
                        key.col,
                        "has no value (remove the key, or give it a value)".to_owned(),
                    ));
                }
                check_node(value, &here)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values_keys_and_missing_paths() {
        let doc = Doc::parse("version: 1\nrules:\n  - name: x\n    from: [a, \"b\"]\n").unwrap();
        let p = KeyPath::root().key("rules").index(0).key("from").index(1);
        assert_eq!(p.to_string(), "rules[0].from[1]");
        assert_eq!(doc.locate(&p), (4, 15));
        assert_eq!(doc.locate_key(&KeyPath::root().key("rules")), (2, 1));
        assert_eq!(doc.locate(&KeyPath::root().key("rules").index(0)), (3, 5));
        // A missing index falls back to its parent.
        let missing = KeyPath::root().key("rules").index(0).key("from").index(9);
        assert_eq!(doc.locate(&missing), (4, 11));
    }

    #[test]
    fn an_alias_of_an_empty_value_is_empty() {
        let doc = Doc::parse("x: [&e ~]\nrules:\n  - from: *e\n").unwrap();
        let (path, ..) = doc.check_keys().unwrap_err();
        assert_eq!(path.to_string(), "rules[0].from");
        let doc = Doc::parse("x: &l [a]\ny: *l\n").unwrap();
        assert!(doc.check_keys().is_ok());
    }

    #[test]
    fn refuses_duplicate_and_empty_keys() {
        let doc = Doc::parse("version: 1\nnetworks:\n  a: [x]\n  a: [y]\n").unwrap();
        let (path, line, col, msg) = doc.check_keys().unwrap_err();
        assert_eq!((path.to_string().as_str(), line, col), ("networks.a", 4, 3));
        assert!(msg.contains("duplicate network"), "{msg}");
        let doc = Doc::parse("version: 1\nrules:\n  - from:\n    action: allow\n").unwrap();
        let (path, line, col, _) = doc.check_keys().unwrap_err();
        assert_eq!(
            (path.to_string().as_str(), line, col),
            ("rules[0].from", 3, 5)
        );
    }
}
