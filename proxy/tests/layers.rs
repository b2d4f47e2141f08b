//! Imports point one way: the crate's top-level modules (`wire`, `errors`, `upstream`,
//! `session`, `server`, …) form no import circle. Reads `proxy/src` as text (every `crate::`
//! and `super::` path outside comments and literals, tests included), builds the module graph
//! and fails naming each circle with the lines that close it, and any import against the order
//! ARCHITECTURE.md's "Layers" list gives the modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that import nothing of the crate, whatever else changes.
const LEAVES: &[&str] = &["errors", "cancel", "lru", "duplex", "logging", "localpg"];

/// One reference from a file to a top-level module.
#[derive(Debug, Clone)]
struct Use {
    file: String,
    line: usize,
}

/// `from` → `to` → where.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Use>>>;

#[test]
fn top_level_modules_form_no_import_circle() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "read too few modules: {:?}", graph.keys());
    let circles: Vec<Vec<String>> = components(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    let mut report = String::new();
    for c in &circles {
        report.push_str(&format!("circle of {}: {}\n", c.len(), c.join(", ")));
        for from in c {
            for (to, uses) in &graph[from] {
                if c.contains(to) {
                    let u = &uses[0];
                    report.push_str(&format!(
                        "  {from} -> {to}  ({}:{}{})\n",
                        u.file,
                        u.line,
                        match uses.len() {
                            1 => String::new(),
                            n => format!(" and {} more", n - 1),
                        }
                    ));
                }
            }
        }
    }
    assert!(circles.is_empty(), "import circles:\n{report}");
}

#[test]
fn leaf_modules_import_nothing_of_the_crate() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for leaf in LEAVES {
        let imports = graph.get(*leaf).map(|m| m.keys().collect::<Vec<_>>());
        assert_eq!(imports, Some(vec![]), "{leaf} must stay a leaf");
    }
}

/// ARCHITECTURE.md's "Layers" list is the order the modules stand in: every module is on it,
/// and none imports one on a later line.
#[test]
fn imports_follow_the_documented_layers() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph(&manifest.join("src"));
    let doc = std::fs::read_to_string(manifest.join("../ARCHITECTURE.md")).expect("readable");
    let layers = documented_layers(&doc);
    let line = |m: &str| layers.iter().position(|l| l.iter().any(|n| n == m));
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        let Some(at) = line(from) else {
            wrong.push(format!("{from} is not in ARCHITECTURE.md's Layers list"));
            continue;
        };
        for (to, uses) in edges {
            if line(to).is_some_and(|t| t > at) {
                let u = &uses[0];
                wrong.push(format!(
                    "{from} (line {}) imports {to} (line {}) at {}:{}",
                    at + 1,
                    line(to).unwrap_or(0) + 1,
                    u.file,
                    u.line
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The backquoted names on each numbered line of the "## Layers" section, bottom first.
fn documented_layers(doc: &str) -> Vec<Vec<String>> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("ARCHITECTURE.md has a Layers section");
    section
        .lines()
        .filter(|l| {
            l.split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        })
        .map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The lexer and path reader on their own, so the graph above is only as wrong as they are.
#[test]
fn reads_paths_not_comments_or_literals() {
    let src = r##"
use crate::{wire::{self, frames}, errors};
use super::super::upstream::Pool; // crate::commented
/* crate::block /* nested crate::x */ */
let s = "crate::in_string"; let r = r#"crate::raw "# ; let c = '"'; let l: &'a str = x;
fn f() { crate::sql::lex(); super::sibling(); }
mod tests { use super::*; use super::Thing; fn g() { super::super::admin::x(); } }
fn h() { super::other(); }
"##;
    let code = code_only(src);
    assert!(!code.contains("commented") && !code.contains("block") && !code.contains("nested"));
    assert!(!code.contains("in_string") && !code.contains("raw"));
    let found: Vec<String> = references(&code, &["session".into(), "route".into()])
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(found[..4], ["wire", "errors", "upstream", "sql"]);
    assert_eq!(
        found[4..],
        ["session"; 5],
        "super:: resolved within the file's module"
    );
    // In a top-level module's own tests, `super::` is that module, not the crate root.
    let top = code_only("mod tests { use super::Lru; } fn f() { super::wire::frames(); }");
    let found: Vec<String> = references(&top, &["lru".into()])
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(found, ["lru", "wire"]);
}

/// Every library file's references to other top-level modules.
fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let files = rust_files(src);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(src).ok()?).first().cloned())
        .collect();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let module = module_path(rel);
        // `main.rs` is the binary, another crate (it reaches the library as `orgwall::`).
        let Some(top) = module.first().cloned() else {
            continue;
        };
        if rel == Path::new("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let edges = graph.entry(top.clone()).or_default();
        for (to, line) in references(&code_only(&text), &module) {
            if to != top && modules.contains(&to) {
                edges.entry(to).or_default().push(Use {
                    file: rel.display().to_string(),
                    line,
                });
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// `session/route.rs` → `[session, route]`; `session/mod.rs` → `[session]`; `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The top-level module of each `crate::` and `super::` path in `code`, with its line.
/// `module` is the file's own module path; inline `mod name { … }` blocks (tests) extend it,
/// so `super::` inside them means the file's module.
fn references(code: &str, module: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut module = module.to_vec();
    // Brace depth, and the depth at which each open inline module ends.
    let (mut depth, mut inline_ends) = (0usize, Vec::new());
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        if starts_word && code[i..].starts_with("crate::") {
            i += "crate::".len();
            let (names, next) = first_segments(code, i);
            out.extend(names.into_iter().map(|n| (n, line_of(i))));
            i = next;
        } else if starts_word && code[i..].starts_with("super::") {
            let mut up = 0;
            while code[i..].starts_with("super::") {
                up += 1;
                i += "super::".len();
            }
            let base = &module[..module.len().saturating_sub(up)];
            let (names, next) = first_segments(code, i);
            for n in names {
                let top = base.first().cloned().unwrap_or(n);
                out.push((top, line_of(i)));
            }
            i = next;
        } else if let Some((name, brace)) = inline_module(code, i).filter(|_| starts_word) {
            module.push(name);
            inline_ends.push(depth);
            depth += 1;
            i = brace + 1;
        } else {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if inline_ends.last() == Some(&depth) {
                        inline_ends.pop();
                        module.pop();
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    // `*` (and nothing: `super::*` reads as an empty name) are globs of the module itself.
    out.retain(|(n, _)| !matches!(n.as_str(), "" | "*" | "self" | "super"));
    out
}

/// `mod name {` at `at`: the name and where its brace is.
fn inline_module(code: &str, at: usize) -> Option<(String, usize)> {
    let rest = code[at..].strip_prefix("mod")?;
    let name_at = rest.len() - rest.trim_start().len();
    if name_at == 0 {
        return None;
    }
    let rest = &rest[name_at..];
    let end = ident_end(rest.as_bytes(), 0);
    let after = &rest[end..];
    let brace = after.len() - after.trim_start().len();
    (end > 0 && after[brace..].starts_with('{'))
        .then(|| (rest[..end].to_string(), at + 3 + name_at + end + brace))
}

/// The first segment of a path starting at `at` (`a::b` → `a`), or of each member of a
/// `{a::b, c}` group; and where reading stopped.
fn first_segments(code: &str, at: usize) -> (Vec<String>, usize) {
    let bytes = code.as_bytes();
    if bytes.get(at) == Some(&b'{') {
        let mut depth = 0;
        let mut names = Vec::new();
        let mut expect_name = true;
        let mut i = at;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => {
                    depth += 1;
                    expect_name = depth == 1;
                }
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return (names, i + 1);
                    }
                }
                b',' if depth == 1 => expect_name = true,
                b if expect_name && (is_ident(b) || b == b'*') => {
                    let end = ident_end(bytes, i);
                    names.push(code[i..end.max(i + 1)].to_string());
                    expect_name = false;
                    i = end.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        (names, i)
    } else {
        let end = ident_end(bytes, at);
        (vec![code[at..end].to_string()], end)
    }
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_ident(bytes[i]) {
        i += 1;
    }
    i
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `src` with comments, string and char literals blanked (newlines kept, so lines still
/// count), lifetimes left alone.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(hashes) = raw_string_start(b, i) {
            let open = 2 + hashes; // r, hashes, quote
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = &rest[open..];
            open + body
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(body.len(), |p| p + close.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && rest.get(1) == Some(&b'\\') {
            // `'\n'`, `'\''`, `'\u{..}'`: the escaped character is never the end.
            3 + rest[3.min(rest.len())..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(0, |p| p + 1)
        } else if rest[0] == b'\'' && char_literal_len(rest).is_some() {
            char_literal_len(rest).unwrap_or(1)
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end.max(1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"…"`, `r#"…"#`, `br"…"`: the number of `#` when a raw string starts at `i`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'r' || (i > 0 && is_ident(b[i - 1]) && b[i - 1] != b'b') {
        return None;
    }
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a one-character literal like `'"'` or `'é'` at the start of `rest`.
fn char_literal_len(rest: &[u8]) -> Option<usize> {
    let n = (1..=4).find(|&n| rest.len() > n && std::str::from_utf8(&rest[1..1 + n]).is_ok())?;
    (rest.get(1 + n) == Some(&b'\'')).then_some(n + 2)
}

/// Strongly connected components (Tarjan), each sorted; a component of more than one module
/// is an import circle.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut c = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    c.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                c.sort();
                self.out.push(c);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}
