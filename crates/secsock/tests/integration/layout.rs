//! The library's dependency rule (docs/DESIGN.md §2), checked on its source: the test
//! parses every file of `src/` (with `syn`), collects what each module names of the crate
//! and of the outside world, and fails naming the file, the module and the path that break
//! a rule:
//!
//! - the core (`core/`) names no front end (`blocking`, `tokio`), no socket setup, thread
//!   credential or platform module, and no socket or runtime of the outside world;
//! - `blocking` and `tokio` never name each other;
//! - the pure modules (names, settings, policy, accounts, the query model, errors,
//!   address prefixes, certificate verification and CRLs, the user step and the users
//!   file) name no front end, core, socket, runtime or thread-credential module (reading
//!   the policy's and the credential files is allowed: that is `std::fs`);
//! - no module depends on itself through others (no import cycles), where a module
//!   declaring or re-exporting its own submodules is containment, not a dependency.
//!
//! Test code (`#[cfg(test)]` items and modules) may name anything. Paths written inside
//! macro invocations are not seen (they are tokens, not syntax); the library names modules
//! in `use` declarations and ordinary paths, which are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::visit::{self, Visit};

/// A module's path inside the crate (`[]` is the crate root).
type ModPath = Vec<String>;

/// One place where a module names another module, or something outside the crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    from: ModPath,
    file: PathBuf,
    /// The path as written, resolved from `crate`.
    written: String,
    to: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Module(ModPath),
    /// A path outside the crate, e.g. `std::net::TcpStream` or `tokio::net::TcpStream`.
    External(String),
}

/// The groups whose modules are the pure ones.
const PURE: &[&str] = &[
    "accounts", "crl", "error", "info", "name", "peers", "policy", "settings", "user", "verify",
];

/// What pure modules and the core must not name in the crate.
const FRONT_AND_OS: &[&str] = &[
    "blocking",
    "tokio",
    "setup",
    "sys",
    "impersonate",
    "platform",
];

/// What pure modules and the core must not name outside the crate: sockets, the runtime,
/// raw system interfaces.
const OUTSIDE_FORBIDDEN: &[&str] = &[
    "tokio",
    "socket2",
    "libc",
    "rustix",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::os::fd",
];

/// What is allowed of the above: file locks (the users file is locked while it is
/// rewritten), and the error type they report.
const OUTSIDE_ALLOWED: &[&str] = &["rustix::fs", "rustix::io"];

fn names(path: &str, list: &[&str]) -> bool {
    list.iter()
        .any(|f| path == *f || path.starts_with(&format!("{f}::")))
}

#[test]
fn the_library_keeps_its_dependency_rule() {
    let crate_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let source = Source::read(&crate_src);
    let references = source.references();
    let mut broken = Vec::new();

    for r in &references {
        if let Some(rule) = rule_broken(r) {
            broken.push(format!(
                "{rule}: {} ({}) names `{}`",
                show(&r.from),
                r.file.display(),
                r.written
            ));
        }
    }
    broken.extend(cycles(&references));
    broken.sort();
    broken.dedup();
    assert!(
        broken.is_empty(),
        "the dependency rule (docs/DESIGN.md §2) is broken:\n{}",
        broken.join("\n")
    );
}

/// The checker sees what it must: it reads every module, and it catches each kind of
/// breach when one is written (so that the rule's test cannot pass by seeing nothing).
#[test]
fn the_dependency_check_sees_a_breach_of_each_rule() {
    let crate_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let source = Source::read(&crate_src);
    for module in [
        "core::session",
        "blocking::stream",
        "name::spn",
        "policy",
        "user::scram::server",
    ] {
        let path: ModPath = module.split("::").map(str::to_owned).collect();
        assert!(source.files.contains_key(&path), "{module} was not read");
    }
    let references = source.references();
    // Known edges of today's code are seen, through `use`, `super` and full paths.
    let sees = |from: &str, to: &str| {
        references
            .iter()
            .any(|r| show(&r.from) == from && matches!(&r.to, Target::Module(m) if show(m) == to))
    };
    assert!(sees("blocking::stream", "core::session"));
    assert!(sees("tokio", "core::session"));
    assert!(sees("core::user_auth", "user::step"));

    // A breach of each rule, planted in a copy of the source, is reported.
    let planted = [
        (
            "core::session",
            "use crate::blocking::stream::SecureStream;",
        ),
        ("core::drain", "fn f(_: std::net::TcpStream) {}"),
        ("blocking::socket", "use crate::tokio::SecureStream;"),
        ("name::spn", "use super::super::sys::set_thread_fsuid;"),
        ("policy", "fn f() { let _ = tokio::spawn; }"),
        ("accounts", "use crate::SecureSocket;"),
    ];
    for (module, line) in planted {
        let mut copy = source.clone();
        let path: ModPath = module.split("::").map(str::to_owned).collect();
        let file = copy.files.get_mut(&path).unwrap();
        file.1.items.push(syn::parse_str(line).unwrap());
        let found = copy.references();
        let reported = found
            .iter()
            .any(|r| r.from == path && !references.contains(r) && rule_broken(r).is_some());
        assert!(reported, "`{line}` in {module} was not reported");
    }
    // A cycle: verify names core::session, and core::session names verify.
    let mut copy = source.clone();
    let session: ModPath = vec!["core".into(), "session".into()];
    copy.files
        .get_mut(&session)
        .unwrap()
        .1
        .items
        .push(syn::parse_str("use crate::verify::ChainValidator;").unwrap());
    let verify: ModPath = vec!["verify".into()];
    copy.files
        .get_mut(&verify)
        .unwrap()
        .1
        .items
        .push(syn::parse_str("use crate::core::session::Session;").unwrap());
    let cycles = cycles(&copy.references());
    assert!(
        cycles
            .iter()
            .any(|c| c.contains("core::session") && c.contains("verify")),
        "the planted cycle was not reported: {cycles:?}"
    );
}

/// The rule `r` breaks, if any.
fn rule_broken(r: &Reference) -> Option<&'static str> {
    let group = r.from.first().map(String::as_str).unwrap_or("");
    match &r.to {
        Target::Module(to) => {
            let to_group = to.first().map(String::as_str).unwrap_or("");
            if group == "core" && FRONT_AND_OS.contains(&to_group) {
                Some("the core names no front end, socket setup or system module")
            } else if (group, to_group) == ("blocking", "tokio")
                || (group, to_group) == ("tokio", "blocking")
            {
                Some("blocking and tokio never name each other")
            } else if PURE.contains(&group)
                && (FRONT_AND_OS.contains(&to_group) || to_group == "core")
            {
                Some("a pure module names no front end, core or system module")
            } else {
                None
            }
        }
        Target::External(path) => {
            let forbidden = names(path, OUTSIDE_FORBIDDEN) && !names(path, OUTSIDE_ALLOWED);
            if forbidden && group == "core" {
                Some("the core touches no socket, runtime or system interface")
            } else if forbidden && PURE.contains(&group) {
                Some("a pure module touches no socket, runtime or system interface")
            } else {
                None
            }
        }
    }
}

/// The crate's source: each module's file, parsed.
#[derive(Clone)]
struct Source {
    files: BTreeMap<ModPath, (PathBuf, syn::File)>,
    /// What each module re-exports (`pub use`, `pub(crate) use`), by module and name:
    /// `crate::SecureStream` is `blocking::stream::SecureStream`, `name::Spn` is
    /// `name::spn::Spn`. A path through a re-export names the module that defines it.
    exports: BTreeMap<(ModPath, String), ModPath>,
}

impl Source {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut pending = vec![src.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let parsed = syn::parse_file(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let relative = path.strip_prefix(src).unwrap().to_path_buf();
                    files.insert(module_path(&relative), (relative, parsed));
                }
            }
        }
        let mut exports = BTreeMap::new();
        for (module, (_, parsed)) in &files {
            for item in &parsed.items {
                let syn::Item::Use(u) = item else { continue };
                if matches!(u.vis, syn::Visibility::Inherited) || is_cfg_test(&u.attrs) {
                    continue;
                }
                for path in flatten_use(&u.tree) {
                    let Some(name) = path.last().cloned() else {
                        continue;
                    };
                    exports.insert((module.clone(), name), resolve_relative(module, &path));
                }
            }
        }
        Source { files, exports }
    }

    /// Every reference of every module that is not test code.
    fn references(&self) -> Vec<Reference> {
        let modules: BTreeSet<ModPath> = self.files.keys().cloned().collect();
        let mut test_only = BTreeSet::new();
        let mut all = Vec::new();
        for (module, (file, parsed)) in &self.files {
            let mut collector = Collector {
                module: module.clone(),
                modules: &modules,
                exports: &self.exports,
                file,
                found: Vec::new(),
                test_only: Vec::new(),
            };
            collector.visit_file(parsed);
            test_only.extend(collector.test_only);
            all.extend(collector.found);
        }
        all.retain(|r| !test_only.iter().any(|t: &ModPath| r.from.starts_with(t)));
        all.sort();
        all.dedup();
        all
    }
}

/// `core/session.rs` → `core::session`; `name/mod.rs` → `name`; `lib.rs` → the root.
fn module_path(relative: &Path) -> ModPath {
    let mut segments: ModPath = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "the crate root".to_owned()
    } else {
        path.join("::")
    }
}

/// A `use` path written in `module`, from `crate` (relative paths of a `pub use` name the
/// module's own submodules, or `super`/`self`).
fn resolve_relative(module: &[String], path: &[String]) -> ModPath {
    let mut base = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        _ => {
            while let Some(s) = rest.first() {
                match s.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
    }
    base.extend(rest.iter().cloned());
    base
}

/// The paths a `use` tree names, each as its segments.
fn flatten_use(tree: &syn::UseTree) -> Vec<Vec<String>> {
    match tree {
        syn::UseTree::Path(p) => flatten_use(&p.tree)
            .into_iter()
            .map(|mut rest| {
                rest.insert(0, p.ident.to_string());
                rest
            })
            .collect(),
        syn::UseTree::Name(n) => vec![vec![n.ident.to_string()]],
        syn::UseTree::Rename(r) => vec![vec![r.ident.to_string()]],
        syn::UseTree::Glob(_) => vec![vec![]],
        syn::UseTree::Group(g) => g.items.iter().flat_map(flatten_use).collect(),
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

struct Collector<'a> {
    /// The module being read (nested inline modules push onto it).
    module: ModPath,
    modules: &'a BTreeSet<ModPath>,
    exports: &'a BTreeMap<(ModPath, String), ModPath>,
    file: &'a Path,
    found: Vec<Reference>,
    /// Modules declared under `#[cfg(test)]`.
    test_only: Vec<ModPath>,
}

impl Collector<'_> {
    /// Records a path written in `self.module`, if it names a module of the crate or
    /// something outside it.
    fn record(&mut self, segments: &[String], leading_colon: bool) {
        let Some(first) = segments.first() else {
            return;
        };
        let absolute: ModPath = if leading_colon {
            return self.external(segments);
        } else if matches!(first.as_str(), "crate" | "super" | "self") {
            resolve_relative(&self.module, segments)
        } else {
            let mut child = self.module.clone();
            child.push(first.clone());
            if self.modules.contains(&child) {
                child.extend(segments[1..].iter().cloned());
                child
            } else if segments.len() > 1 || first.chars().next().is_some_and(char::is_lowercase) {
                return self.external(segments);
            } else {
                return;
            }
        };
        let absolute = self.through_exports(absolute);
        let longest = (0..=absolute.len())
            .rev()
            .map(|n| absolute[..n].to_vec())
            .find(|prefix| self.modules.contains(prefix))
            .unwrap_or_default();
        if longest != self.module {
            self.found.push(Reference {
                from: self.module.clone(),
                file: self.file.to_path_buf(),
                written: format!("crate::{}", absolute.join("::")),
                to: Target::Module(longest),
            });
        }
    }

    /// `absolute` with every re-export on its way replaced by what it re-exports:
    /// `crate::SecureSocket` → `crate::blocking::socket::SecureSocket`.
    fn through_exports(&self, mut absolute: ModPath) -> ModPath {
        // Bounded: a re-export of a re-export of ... ends within a few steps.
        'resolve: for _ in 0..8 {
            for n in (0..absolute.len()).rev() {
                let module = absolute[..n].to_vec();
                if !self.modules.contains(&module) {
                    continue;
                }
                let key = (module, absolute[n].clone());
                match self.exports.get(&key) {
                    Some(target) if *target != absolute[..=n] => {
                        let mut resolved = target.clone();
                        resolved.extend(absolute[n + 1..].iter().cloned());
                        absolute = resolved;
                        continue 'resolve;
                    }
                    _ => break 'resolve,
                }
            }
            break;
        }
        absolute
    }

    fn external(&mut self, segments: &[String]) {
        self.found.push(Reference {
            from: self.module.clone(),
            file: self.file.to_path_buf(),
            written: segments.join("::"),
            to: Target::External(segments.join("::")),
        });
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            _ => return visit::visit_item(self, item),
        };
        if is_cfg_test(attrs) {
            if let syn::Item::Mod(m) = item {
                let mut path = self.module.clone();
                path.push(m.ident.to_string());
                self.test_only.push(path);
            }
            return;
        }
        visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Fn(f) => &f.attrs,
            syn::ImplItem::Const(c) => &c.attrs,
            syn::ImplItem::Type(t) => &t.attrs,
            _ => return visit::visit_impl_item(self, item),
        };
        if !is_cfg_test(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for path in flatten_use(&u.tree) {
            self.record(&path, u.leading_colon.is_some());
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 || path.leading_colon.is_some() {
            self.record(&segments, path.leading_colon.is_some());
        }
        visit::visit_path(self, path);
    }
}

/// The import cycles among the crate's modules, each as a sentence. A module naming its own
/// submodules (declaring, re-exporting) is containment, not a dependency, and the crate
/// root only re-exports.
fn cycles(references: &[Reference]) -> Vec<String> {
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for r in references {
        if let Target::Module(to) = &r.to {
            if !r.from.is_empty() && !to.starts_with(&r.from) && to != &r.from {
                edges.entry(r.from.clone()).or_default().insert(to.clone());
            }
        }
    }
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    // Report each cycle once, from its smallest module.
                    let smallest = cycle.iter().min().unwrap().clone();
                    let at = cycle.iter().position(|m| *m == smallest).unwrap();
                    cycle.rotate_left(at);
                    let mut sentence = String::from("an import cycle: ");
                    for m in &cycle {
                        let _ = write!(sentence, "{} → ", show(m));
                    }
                    sentence.push_str(&show(&cycle[0]));
                    found.insert(sentence);
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found.into_iter().collect()
}
