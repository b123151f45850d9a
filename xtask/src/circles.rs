//! Module circles inside one crate: which modules name each other, read from
//! the source with `syn`, and the cycles among them.
//!
//! The module tree is the compiler's: `mod foo;` is `foo.rs` or `foo/mod.rs`
//! beside a crate root or `mod.rs`, and `<stem>/foo.rs` beside any other file
//! (`#[path]` is honoured on file modules); inline `mod foo { .. }` counts as
//! a module too. Items under `#[cfg(test)]` (the `mod tests` beside the code,
//! test-only helpers) are not read: tests may reach anywhere.
//!
//! A module *names* another where its code holds a path to it or into it:
//! `use` trees, paths in types and expressions, and `crate::`/`super::`/
//! `self::` paths inside macro calls. Paths start at `crate`, `super`, `self`
//! or a child module, and a name a module re-exports (`pub use db::Db` in the
//! root, then `crate::Db`) leads on to where it is defined. Paths to other
//! crates are not this check's business (the crate rules are).
//!
//! A path between a module and its own ancestor or descendant is the tree
//! itself (a parent wires its children, a child uses `super::` items) and
//! counts for nothing. Any other path is lifted to the two siblings under the
//! modules' nearest common ancestor: `a::x` naming `b::y` is `a -> b` at the
//! top of the crate, `a::x` naming `a::y` is `a::x -> a::y` within `a`. A
//! circle is a cycle of such sibling edges.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// A module's path from the crate root: empty for the root, `["a", "b"]` for
/// `crate::a::b`.
type ModPath = Vec<String>;

/// A cycle of modules that name each other, first module repeated at the end
/// when shown, with what makes each step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Circle {
    /// The modules in order, each naming the next, the last naming the first.
    pub modules: Vec<String>,
    /// For each step, one place that makes it: `file: path`.
    pub because: Vec<String>,
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for module in &self.modules {
            write!(f, "{module} -> ")?;
        }
        f.write_str(self.modules.first().map_or("", String::as_str))
    }
}

/// One path written in a module.
#[derive(Debug)]
struct Reference {
    from: ModPath,
    /// The path as written, `crate`/`super`/`self` included.
    path: Vec<String>,
    file: PathBuf,
}

/// What the parse of one crate found: its modules, the names each imports
/// (for following re-exports) and every path written.
#[derive(Debug, Default)]
struct Crate {
    modules: BTreeSet<ModPath>,
    /// module -> imported name -> path as written in that module.
    imports: HashMap<ModPath, HashMap<String, Vec<String>>>,
    references: Vec<Reference>,
}

/// Every module circle of the crate whose root file is `root` (`src/lib.rs`,
/// `src/main.rs`). `read` gives a file's text, or `None` if there is none;
/// tests pass files from memory.
pub fn circles(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Result<Vec<Circle>> {
    let mut krate = Crate::default();
    krate.modules.insert(Vec::new());
    let text = read(root).with_context(|| format!("reading {}", root.display()))?;
    let dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
    krate.file(root, &text, &[], &dir, read)?;

    // Sibling edges, each with the first place that makes it.
    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
    for reference in &krate.references {
        let Some(to) = krate.resolve(&reference.from, &reference.path, 0) else {
            continue;
        };
        let from = &reference.from;
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // the same module, or along the tree
        }
        edges
            .entry(from[..=common].to_vec())
            .or_default()
            .entry(to[..=common].to_vec())
            .or_insert_with(|| {
                format!(
                    "{}: {}",
                    reference.file.display(),
                    reference.path.join("::")
                )
            });
    }
    Ok(cycles(&edges))
}

impl Crate {
    /// Reads the items of one file, the module `module`, whose child module
    /// files live in `dir`.
    fn file(
        &mut self,
        file: &Path,
        text: &str,
        module: &[String],
        dir: &Path,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<()> {
        let parsed =
            syn::parse_file(text).with_context(|| format!("parsing {}", file.display()))?;
        self.items(file, &parsed.items, module, dir, true, read)
    }

    /// `top`: the items are a file's own, not inside an inline module (for
    /// `#[path]`).
    fn items(
        &mut self,
        file: &Path,
        items: &[syn::Item],
        module: &[String],
        dir: &Path,
        top: bool,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<()> {
        for item in items {
            match item {
                syn::Item::Mod(m) if !test_only(&m.attrs) => {
                    let name = m.ident.to_string();
                    let mut child = module.to_vec();
                    child.push(name.clone());
                    self.modules.insert(child.clone());
                    if let Some((_, inline)) = &m.content {
                        self.items(file, inline, &child, &dir.join(&name), false, read)?;
                    } else {
                        let (path, text) = child_file(file, &m.attrs, &name, dir, top, read)?;
                        let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
                        let path_attr = path_attribute(&m.attrs).is_some();
                        let child_dir = if is_mod_rs || path_attr {
                            path.parent().unwrap_or(Path::new("")).to_path_buf()
                        } else {
                            dir.join(&name)
                        };
                        self.file(&path, &text, &child, &child_dir, read)?;
                    }
                }
                item => {
                    let mut collect = Collect {
                        krate: self,
                        module,
                        file,
                    };
                    collect.visit_item(item);
                }
            }
        }
        Ok(())
    }

    /// Records a `use` tree written in `module`: each leaf path as a
    /// reference, each name it brings in as an import.
    fn use_tree(&mut self, module: &[String], file: &Path, prefix: &[String], tree: &syn::UseTree) {
        let mut path = prefix.to_vec();
        let leaf = |path: &[String], name: Option<String>, krate: &mut Self| {
            // `use foo::{self}` names `foo` itself.
            let mut path = path.to_vec();
            if path.last().is_some_and(|s| s == "self") && path.len() > 1 {
                path.pop();
            }
            if let Some(name) = name.or_else(|| path.last().cloned()) {
                krate
                    .imports
                    .entry(module.to_vec())
                    .or_default()
                    .insert(name, path.clone());
            }
            krate.references.push(Reference {
                from: module.to_vec(),
                path,
                file: file.to_path_buf(),
            });
        };
        match tree {
            syn::UseTree::Path(p) => {
                path.push(p.ident.to_string());
                self.use_tree(module, file, &path, &p.tree);
            }
            syn::UseTree::Name(n) => {
                path.push(n.ident.to_string());
                leaf(&path, None, self);
            }
            syn::UseTree::Rename(r) => {
                path.push(r.ident.to_string());
                leaf(&path, Some(r.rename.to_string()), self);
            }
            syn::UseTree::Glob(_) => self.references.push(Reference {
                from: module.to_vec(),
                path,
                file: file.to_path_buf(),
            }),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(module, file, &path, tree);
                }
            }
        }
    }

    /// The module a path written in `from` leads to, or `None` if it leaves
    /// the crate or starts at a name that is not a module.
    fn resolve(&self, from: &[String], path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None; // a re-export loop; the compiler rejects those anyway
        }
        let mut segments = path.iter().peekable();
        let mut at: ModPath = match segments.peek()?.as_str() {
            "crate" | "$crate" => {
                segments.next();
                Vec::new()
            }
            "super" | "self" => from.to_vec(),
            first => {
                let mut child = from.to_vec();
                child.push(first.to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
                from.to_vec()
            }
        };
        while let Some(segment) = segments.peek() {
            match segment.as_str() {
                "self" => {}
                "super" => {
                    at.pop()?;
                }
                _ => break,
            }
            segments.next();
        }
        for segment in segments {
            let mut child = at.clone();
            child.push(segment.clone());
            if self.modules.contains(&child) {
                at = child;
                continue;
            }
            // A name imported here may be a re-export of another module's item.
            if let Some(import) = self.imports.get(&at).and_then(|i| i.get(segment))
                && import.as_slice() != path
            {
                return self.resolve(&at, import, depth + 1).or(Some(at));
            }
            break;
        }
        Some(at)
    }
}

/// The file of `mod name;` declared in `file`, and its text.
fn child_file(
    file: &Path,
    attrs: &[syn::Attribute],
    name: &str,
    dir: &Path,
    top: bool,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Result<(PathBuf, String)> {
    let candidates = match path_attribute(attrs) {
        Some(_) if !top => bail!(
            "{}: #[path] on `mod {name};` inside an inline module is not supported",
            file.display()
        ),
        Some(path) => vec![file.parent().unwrap_or(Path::new("")).join(path)],
        None => vec![
            dir.join(format!("{name}.rs")),
            dir.join(name).join("mod.rs"),
        ],
    };
    candidates
        .iter()
        .find_map(|path| Some((path.clone(), read(path)?)))
        .with_context(|| {
            format!(
                "{}: no file for `mod {name};` (looked for {})",
                file.display(),
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Whether the attributes compile the item for tests only: `#[cfg(test)]`,
/// `#[cfg(all(test, ..))]`.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| match &a.meta {
        syn::Meta::List(list) if list.path.is_ident("cfg") => requires_test(list.tokens.clone()),
        _ => false,
    })
}

fn requires_test(predicate: TokenStream) -> bool {
    let tokens: Vec<TokenTree> = predicate.into_iter().collect();
    match tokens.as_slice() {
        [TokenTree::Ident(i)] => i == "test",
        [TokenTree::Ident(i), TokenTree::Group(g)] if i == "all" => {
            let mut part = TokenStream::new();
            let mut parts = Vec::new();
            for token in g.stream() {
                if matches!(&token, TokenTree::Punct(p) if p.as_char() == ',') {
                    parts.push(std::mem::take(&mut part));
                } else {
                    part.extend([token]);
                }
            }
            parts.push(part);
            parts.into_iter().any(requires_test)
        }
        _ => false,
    }
}

/// Collects the paths of the items of one module (not its child modules).
struct Collect<'a> {
    krate: &'a mut Crate,
    module: &'a [String],
    file: &'a Path,
}

impl Collect<'_> {
    fn reference(&mut self, path: Vec<String>) {
        self.krate.references.push(Reference {
            from: self.module.to_vec(),
            path,
            file: self.file.to_path_buf(),
        });
    }

    /// `crate::a::b`, `$crate::a`, `super::a`, `self::a` inside macro tokens.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(start)
                    if ["crate", "super", "self"].contains(&start.to_string().as_str()) =>
                {
                    let mut path = vec![start.to_string()];
                    let mut j = i + 1;
                    while let [
                        TokenTree::Punct(a),
                        TokenTree::Punct(b),
                        TokenTree::Ident(next),
                        ..,
                    ] = &tokens[j..]
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                    {
                        path.push(next.to_string());
                        j += 3;
                    }
                    if path.len() > 1 {
                        self.reference(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collect<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !test_only(item_attrs(item)) {
            visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(c) => &c.attrs,
            syn::ImplItem::Fn(f) => &f.attrs,
            syn::ImplItem::Type(t) => &t.attrs,
            syn::ImplItem::Macro(m) => &m.attrs,
            _ => return visit::visit_impl_item(self, item),
        };
        if !test_only(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.krate.use_tree(self.module, self.file, &[], &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            self.reference(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.tokens(mac.tokens.clone());
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// One circle per module caught in a strongly connected component: the
/// shortest cycle through it, each shown once (rotated to start at its
/// smallest module).
fn cycles(edges: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Vec<Circle> {
    let mut found = BTreeSet::new();
    for component in components(edges) {
        for start in &component {
            // Breadth-first from `start` back to itself, inside the component.
            let mut came_from: HashMap<&ModPath, &ModPath> = HashMap::new();
            let mut queue = VecDeque::from([start]);
            let mut last = None;
            'search: while let Some(at) = queue.pop_front() {
                for next in edges.get(at).into_iter().flat_map(BTreeMap::keys) {
                    if !component.contains(next) {
                        continue;
                    }
                    if next == start {
                        last = Some(at);
                        break 'search;
                    }
                    if !came_from.contains_key(next) {
                        came_from.insert(next, at);
                        queue.push_back(next);
                    }
                }
            }
            let Some(mut at) = last else { continue };
            let mut cycle = vec![at.clone()];
            while at != start {
                at = came_from[at];
                cycle.push(at.clone());
            }
            cycle.reverse();
            let smallest = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
            cycle.rotate_left(smallest);
            found.insert(cycle);
        }
    }
    found
        .into_iter()
        .map(|cycle| {
            let because = (0..cycle.len())
                .map(|i| {
                    let (from, to) = (&cycle[i], &cycle[(i + 1) % cycle.len()]);
                    edges[from][to].clone()
                })
                .collect();
            Circle {
                modules: cycle.iter().map(|m| m.join("::")).collect(),
                because,
            }
        })
        .collect()
}

/// The strongly connected components of more than one module (Tarjan).
fn components(edges: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Vec<BTreeSet<ModPath>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<ModPath, BTreeMap<ModPath, String>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<BTreeSet<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a ModPath) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.edges.get(node).into_iter().flat_map(BTreeMap::keys) {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top.clone());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circles_in(files: &[(&str, &str)]) -> Vec<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
            .collect();
        circles(Path::new("src/lib.rs"), &|p| files.get(p).cloned())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_circle_through_a_re_export_and_a_macro_is_found() {
        let found = circles_in(&[
            (
                "src/lib.rs",
                "mod db; mod migrations; mod store; pub use db::Db;",
            ),
            (
                "src/db.rs",
                "pub struct Db; fn listen() { tracing::info!(\"{}\", crate::migrations::CHANNEL); }",
            ),
            (
                "src/migrations.rs",
                "use crate::store; pub const CHANNEL: &str = \"x\";",
            ),
            ("src/store.rs", "fn open(_: &crate::Db) {}"),
        ]);
        assert_eq!(found, ["db -> migrations -> store -> db"]);
    }

    #[test]
    fn siblings_in_a_folder_and_top_level_modules_are_both_checked() {
        let found = circles_in(&[
            ("src/lib.rs", "mod up; mod seed;"),
            ("src/up.rs", "mod mesh; mod start;"),
            ("src/up/mesh.rs", "use super::start::go; pub struct Mesh;"),
            ("src/up/start.rs", "pub fn go(_: super::mesh::Mesh) {}"),
            ("src/seed.rs", "fn demo(_: &crate::up::Mesh) {}"),
        ]);
        // `seed` names `up`, but `up` does not name `seed`: no circle there.
        assert_eq!(found, ["up::mesh -> up::start -> up::mesh"]);
    }

    #[test]
    fn a_tree_without_a_circle_passes() {
        let found = circles_in(&[
            (
                "src/lib.rs",
                "pub mod host; pub mod service; pub use host::Host; \
                 mod inline { pub fn f() -> crate::host::Host { super::host::Host } }",
            ),
            (
                "src/host/mod.rs",
                "mod parts; pub struct Host; use parts::Part;",
            ),
            (
                "src/host/parts.rs",
                "pub struct Part(super::Host); use crate::Host;",
            ),
            (
                "src/service.rs",
                "use crate::{Host, host}; use crate::inline::f; \
                 #[path = \"service_impl.rs\"] mod imp;",
            ),
            ("src/service_impl.rs", "use super::super::host::Host;"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn test_only_code_is_ignored() {
        let found = circles_in(&[
            ("src/lib.rs", "mod a; mod b;"),
            (
                "src/a.rs",
                "pub fn one() {} #[cfg(test)] mod tests { use crate::b::two; }",
            ),
            (
                "src/b.rs",
                "pub fn two() { crate::a::one() } \
                 #[cfg(all(test, unix))] fn helper() { crate::b::two() } \
                 #[cfg(test)] mod tests;",
            ),
            ("src/b/tests.rs", "use crate::a::one; use crate::b::two;"),
        ]);
        assert!(found.is_empty(), "{found:?}");
        let found = circles_in(&[
            ("src/lib.rs", "mod a; mod b;"),
            ("src/a.rs", "pub fn one() { crate::b::two() }"),
            ("src/b.rs", "pub fn two() { crate::a::one() }"),
        ]);
        assert_eq!(found, ["a -> b -> a"]);
    }

    #[test]
    fn every_module_of_a_component_is_in_a_shown_circle() {
        let found = circles_in(&[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            (
                "src/a.rs",
                "use crate::b::B; use crate::c::C; pub struct A;",
            ),
            ("src/b.rs", "use crate::a::A; pub struct B;"),
            ("src/c.rs", "use crate::a::A; pub struct C;"),
        ]);
        assert_eq!(found, ["a -> b -> a", "a -> c -> a"]);
    }

    #[test]
    fn a_missing_module_file_is_an_error() {
        let err = circles(Path::new("src/lib.rs"), &|p| {
            (p == Path::new("src/lib.rs")).then(|| "mod gone;".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("no file for `mod gone;`"), "{err}");
    }
}
