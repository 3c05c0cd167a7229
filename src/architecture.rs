//! The shape of the source tree, checked: imports point down the spine, files and functions stay
//! short enough to read. Reads `src/` as text; rustfmt's layout is what makes that reliable.

use std::path::{Path, PathBuf};

/// The layers, from the ground up: a module may import its own layer and those below, never one
/// above. A path names a top-level module or one inside it; the longest prefix that matches a
/// module decides its layer (the sink tasks and the outbound sender journal what they did, so
/// they stand above the journal, beside the channels, with the sender's transports, while the
/// rest of `events` and `outbound` are stages below the processor).
const LAYERS: &[(&str, u8)] = &[
    // Plain types and configuration.
    ("model", 0),
    ("config", 0),
    // The ground floor: storage and rules every stage shares.
    ("store", 1),
    ("ids", 1),
    ("identity", 1),
    ("message_id", 1),
    ("backoff", 1),
    ("ratelimit", 1),
    // The stages of applying one record.
    ("contacts", 2),
    ("conversations", 2),
    ("tickets", 2),
    ("routing", 2),
    ("events", 2),
    ("outbound", 2),
    ("delivery", 2),
    // The processor, and the settings it reads once per step.
    ("processor", 3),
    ("live", 3),
    // The journal: everything above writes into it.
    ("journal", 4),
    // What journals: channel adapters, the sink tasks, the outbound sender.
    ("channels", 5),
    ("events::sinks", 5),
    ("outbound::sender", 5),
    // The sender's transports, and the Messenger profile task that shares them.
    ("outbound::smtp", 5),
    ("outbound::graph", 5),
    ("outbound::profile", 5),
    // Above the pipeline: the HTTP server, housekeeping passes, backups.
    ("http", 6),
    ("housekeeping", 6),
    ("backup", 6),
    ("telemetry", 6),
    // What builds and runs everything.
    ("app", 7),
    ("allocator", 7),
    ("cli", 7),
];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

fn layer(path: &str) -> Option<(&'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(module, _)| {
            path == *module
                || path
                    .strip_prefix(module)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
        .max_by_key(|(module, _)| module.len())
        .copied()
}

/// The library's sources, without the bench (its own tool, not the daemon) and without
/// `lib.rs`/`main.rs` (they name every module).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("bin") {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found.sort();
    found
}

/// `channels::email::mime` for `src/channels/email/mime.rs`.
fn module_of(path: &Path) -> String {
    let relative = path
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|part| part != "mod")
        .collect();
    parts.join("::")
}

/// The production part of a file: tests (a `tests.rs`, a `tests/` folder, or a trailing
/// `#[cfg(test)] mod`) cut.
fn production(path: &Path, text: &str) -> Option<String> {
    let in_tests = path
        .components()
        .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs");
    if in_tests {
        return None;
    }
    let end = text.find("\n#[cfg(test)]\nmod ").unwrap_or(text.len());
    Some(text[..end].to_owned())
}

#[test]
fn the_longest_module_prefix_decides_the_layer() {
    assert_eq!(layer("events::sinks::feed"), Some(("events::sinks", 5)));
    assert_eq!(layer("events::outbox"), Some(("events", 2)));
    assert_eq!(layer("outbound::sender"), Some(("outbound::sender", 5)));
    assert_eq!(layer("outbound::senders"), Some(("outbound", 2)));
    assert_eq!(layer("nowhere"), None);
}

#[test]
fn imports_point_down_the_spine() {
    let mut upward = Vec::new();
    for path in sources() {
        let module = module_of(&path);
        let Some((_, own)) = layer(&module) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(code) = production(&path, &text) else {
            continue;
        };
        for (n, line) in resolve_super(&module, &code).lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let target: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':')
                    .collect();
                let target = target.trim_end_matches(':');
                if let Some((named, theirs)) = layer(target) {
                    if theirs > own && !module.starts_with(named) {
                        upward.push(format!(
                            "{}:{}: {module} (layer {own}) imports {target} (layer {theirs})",
                            path.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the spine:\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .map(|name| name.trim_end_matches(';'))
        .filter(|name| layer(name).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules missing from LAYERS: {missing:?}"
    );
}

#[test]
fn files_stay_short() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:?}"
    );
}

/// Each module's file opens with a doc comment saying what it is for (test modules aside:
/// their tests' names say it).
#[test]
fn every_module_says_what_it_is_for() {
    let silent: Vec<String> = sources()
        .into_iter()
        .filter(|path| {
            let test_module = path.ends_with("tests.rs") || path.ends_with("tests/mod.rs");
            !test_module
                && !std::fs::read_to_string(path)
                    .unwrap()
                    .trim_start()
                    .starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        silent.is_empty(),
        "modules without a //! doc comment: {silent:?}"
    );
}

/// A function's length, from its `fn` line to the `}` rustfmt puts at the same indentation.
#[test]
fn production_functions_stay_short() {
    let mut long = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(code) = production(&path, &text) else {
            continue;
        };
        let lines: Vec<&str> = code.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = trimmed.split_whitespace().any(|word| word == "fn")
                && !trimmed.starts_with("//")
                && !trimmed.ends_with(';')
                && (trimmed.starts_with("fn ")
                    || trimmed.starts_with("pub")
                    || trimmed.starts_with("async fn ")
                    || trimmed.starts_with("const fn "));
            if !is_fn {
                continue;
            }
            let indent = &line[..line.len() - trimmed.len()];
            let close = format!("{indent}}}");
            let Some(end) = lines[start..].iter().position(|l| *l == close) else {
                continue;
            };
            if end + 1 > MAX_FN_LINES {
                long.push(format!(
                    "{}:{} ({} lines)",
                    path.display(),
                    start + 1,
                    end + 1
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The top-level modules a piece of code names through `crate::` paths, `use crate::{a, b::c}`
/// groups included.
fn named_modules(code: &str) -> std::collections::BTreeSet<String> {
    let word = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let mut named = std::collections::BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let (mut depth, mut item_start) = (0usize, true);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        _ if item_start && !c.is_whitespace() => {
                            named.insert(word(&group[i..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => {
                named.insert(word(rest));
            }
        }
    }
    named.remove("");
    named
}

/// `code` (the file of `module`) with every `super::` path written from the crate root, so that
/// a path climbing out of its module (`super::super::tickets::Ticket` in `conversations::email`)
/// names the module it leads to: `crate::tickets::Ticket`. An inline module (`mod name {`,
/// closed by the `}` rustfmt puts at its indentation) is one level deeper than its file.
fn resolve_super(module: &str, code: &str) -> String {
    let mut inline: Vec<(String, &str)> = Vec::new();
    let mut resolved = String::with_capacity(code.len());
    for line in code.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed == "}" && inline.last().is_some_and(|(_, open)| *open == indent) {
            inline.pop();
        }
        let path: Vec<&str> = module
            .split("::")
            .chain(inline.iter().map(|(name, _)| name.as_str()))
            .collect();
        resolved.push_str(&resolve_super_in_line(line, &path));
        resolved.push('\n');
        if let Some(name) = inline_module(trimmed) {
            inline.push((name, indent));
        }
    }
    resolved
}

/// The name of the inline module a line opens (`mod name {`, `pub(crate) mod name {`).
fn inline_module(trimmed: &str) -> Option<String> {
    let rest = trimmed.strip_suffix(" {")?;
    let rest = rest
        .strip_prefix("pub ")
        .or_else(|| rest.strip_prefix("pub(crate) "))
        .or_else(|| rest.strip_prefix("pub(super) "))
        .unwrap_or(rest);
    let name = rest.strip_prefix("mod ")?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| name.to_owned())
}

/// One line with its `super::` chains replaced by the path from the crate root, `path` being
/// the module the line is in.
fn resolve_super_in_line(line: &str, path: &[&str]) -> String {
    const SUPER: &str = "super::";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(SUPER) {
        let starts_path = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        out.push_str(&rest[..at]);
        if !starts_path {
            out.push_str(SUPER);
            rest = &rest[at + SUPER.len()..];
            continue;
        }
        let mut after = &rest[at..];
        let mut climbs = 0;
        while let Some(next) = after.strip_prefix(SUPER) {
            climbs += 1;
            after = next;
        }
        let kept = &path[..path.len().saturating_sub(climbs)];
        out.push_str("crate::");
        for segment in kept {
            out.push_str(segment);
            out.push_str("::");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[test]
fn super_paths_name_the_module_they_lead_to() {
    let code = "use super::{Step, Ticket};\nuse super::super::outbound::erase;\n\
                pub(super) fn f() {}\nmod inner {\n    use super::super::super::events::X;\n}\n\
                use super::super::events;\n";
    let resolved = resolve_super("tickets::split", code);
    assert_eq!(
        resolved,
        "use crate::tickets::{Step, Ticket};\nuse crate::outbound::erase;\n\
         pub(super) fn f() {}\nmod inner {\n    use crate::events::X;\n}\n\
         use crate::events;\n"
    );
    let named: Vec<String> = named_modules(&resolved).into_iter().collect();
    assert_eq!(named, ["events", "outbound", "tickets"]);
    // A module's own file (`mod.rs`, or `name.rs` at the top) climbs to the crate at once.
    assert_eq!(
        resolve_super("conversations", "use super::tickets::Ticket;"),
        "use crate::tickets::Ticket;\n"
    );
}

#[test]
fn groups_of_crate_paths_name_each_module() {
    let code = "use crate::{config::X, store::{keys, Store}};\nlet _ = crate::ids::Minter::new;";
    let named: Vec<String> = named_modules(code).into_iter().collect();
    assert_eq!(named, ["config", "ids", "store"]);
}

type Imports = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// A circle of top-level modules, each importing the next and the last the first (`a`, `b`,
/// `a` for two that import each other), if the imports hold one.
fn circle(uses: &Imports) -> Option<Vec<String>> {
    fn walk<'a>(
        uses: &'a Imports,
        module: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut circle: Vec<String> = path[at..].iter().map(|m| m.to_string()).collect();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module);
        for next in uses.get(module).into_iter().flatten() {
            if let Some(circle) = walk(uses, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    uses.keys()
        .find_map(|start| walk(uses, start, &mut Vec::new(), &mut done))
}

#[test]
fn a_circle_of_any_length_is_found() {
    let imports = |pairs: &[(&str, &str)]| {
        let mut uses = Imports::new();
        for (a, b) in pairs {
            uses.entry(a.to_string()).or_default().insert(b.to_string());
        }
        uses
    };
    let chain = imports(&[("a", "b"), ("b", "c"), ("a", "c")]);
    assert_eq!(circle(&chain), None);
    let three = imports(&[("a", "b"), ("b", "c"), ("c", "a")]);
    assert_eq!(circle(&three).unwrap(), ["a", "b", "c", "a"]);
    let two = imports(&[("x", "a"), ("a", "b"), ("b", "a")]);
    assert_eq!(circle(&two).unwrap(), ["a", "b", "a"]);
}

/// No top-level modules import each other, directly or around a circle (inside one folder is
/// free): the stages depend one way, events < contacts < conversations < outbound < tickets,
/// each reading the plain records it shares with the others from [`crate::model`].
#[test]
fn no_new_import_cycles_between_modules() {
    let mut uses = Imports::new();
    for path in sources() {
        let module = module_of(&path);
        let top = module.split("::").next().unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(code) = production(&path, &text) else {
            continue;
        };
        let code: String = resolve_super(&module, &code)
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let named: Vec<String> = named_modules(&code)
            .into_iter()
            .filter(|m| *m != top)
            .collect();
        uses.entry(top).or_default().extend(named);
    }
    let found = circle(&uses);
    assert!(
        found.is_none(),
        "modules that import each other: {}",
        found.unwrap_or_default().join(" -> ")
    );
}
