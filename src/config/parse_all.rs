//! Every type error of a config file at once. serde stops at the first bad value; to name the
//! others too, the file's TOML is read as a tree, the bad value is taken out (a bad enum value
//! is replaced by a valid one, so that its table stays), and the rest is read again, until it
//! reads or nothing more can be taken out. A "missing field" that only
//! the removal caused is not reported.

use super::{Config, ConfigProblem};

/// Enough for any real file; a bound so that a pathological one cannot loop for long.
const MAX_PROBLEMS: usize = 32;

/// The problems after the first (which [`Config::parse`] reports with its line): every other
/// value of the wrong type or the wrong name.
pub(super) fn more_problems(text: &str, first: &ConfigProblem) -> Vec<ConfigProblem> {
    let Ok(mut tree) = text.parse::<toml::Table>() else {
        return Vec::new(); // a syntax error: there is no tree to read further
    };
    let mut removed = Vec::new();
    if let Some(valid) = expected_variant(&first.message) {
        if !replace(&mut tree, &first.path, valid) {
            return Vec::new();
        }
    } else if remove(&mut tree, &first.path) {
        removed.push(first.path.clone());
    } else {
        return Vec::new();
    }
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let value = toml::Value::Table(tree.clone());
        let error = match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(_) => break,
            Err(error) => error,
        };
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = error.into_inner().message().trim().to_owned();
        let caused_by_removal =
            message.starts_with("missing field") && removed.iter().any(|r| is_child(r, &path));
        if !caused_by_removal {
            problems.push(ConfigProblem {
                path: path.clone(),
                message: message.clone(),
            });
        }
        if path.is_empty() {
            break;
        }
        // A bad enum value is replaced by a valid one, so that the rest of its table is still
        // read; any other bad value is taken out.
        if let Some(valid) = expected_variant(&message) {
            if !replace(&mut tree, &path, valid) {
                break;
            }
        } else if remove(&mut tree, &path) {
            removed.push(path);
        } else {
            break;
        }
    }
    problems
}

/// The first variant serde's "unknown variant" message lists.
fn expected_variant(message: &str) -> Option<&str> {
    if !message.starts_with("unknown variant") {
        return None;
    }
    let rest = message.split("expected ").nth(1)?;
    let rest = rest.strip_prefix("one of ").unwrap_or(rest);
    let start = rest.find('`')? + 1;
    let end = start + rest[start..].find('`')?;
    Some(&rest[start..end])
}

/// Puts a string at a serde path: the value taken out, then the new one in its place.
fn replace(tree: &mut toml::Table, path: &str, value: &str) -> bool {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) if !last.contains('[') => (Some(parent), last),
        None if !path.contains('[') => (None, path),
        _ => return false,
    };
    let table = match parent {
        None => Some(tree),
        Some(parent) => lookup(tree, parent),
    };
    match table {
        Some(table) => {
            table.insert(last.to_owned(), toml::Value::String(value.to_owned()));
            true
        }
        None => false,
    }
}

/// The table at a serde path of keys.
fn lookup<'t>(tree: &'t mut toml::Table, path: &str) -> Option<&'t mut toml::Table> {
    let mut table = tree;
    for key in path.split('.') {
        table = table.get_mut(key)?.as_table_mut()?;
    }
    Some(table)
}

/// Whether `path` names a value inside the table at `table`.
fn is_child(path: &str, table: &str) -> bool {
    table.is_empty()
        || path.starts_with(&format!("{table}."))
        || path.starts_with(&format!("{table}["))
}

/// Takes the value at a serde path (`a.b[2].c`) out of the tree; false when there is none.
fn remove(tree: &mut toml::Table, path: &str) -> bool {
    let segments = segments(path);
    let Some((Segment::Key(first), rest)) = segments.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return tree.remove(first.as_str()).is_some();
    }
    tree.get_mut(first.as_str())
        .is_some_and(|node| remove_in(node, rest))
}

fn remove_in(node: &mut toml::Value, path: &[Segment]) -> bool {
    let Some((segment, rest)) = path.split_first() else {
        return false;
    };
    match (segment, node) {
        (Segment::Key(key), toml::Value::Table(table)) if rest.is_empty() => {
            table.remove(key.as_str()).is_some()
        }
        (Segment::Index(i), toml::Value::Array(array)) if rest.is_empty() && *i < array.len() => {
            array.remove(*i);
            true
        }
        (Segment::Key(key), toml::Value::Table(table)) => table
            .get_mut(key.as_str())
            .is_some_and(|next| remove_in(next, rest)),
        (Segment::Index(i), toml::Value::Array(array)) => {
            array.get_mut(*i).is_some_and(|next| remove_in(next, rest))
        }
        _ => false,
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segments.push(Segment::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    segments.push(Segment::Index(i));
                }
                rest = &rest[close + 1..];
                if !rest.starts_with('[') {
                    break;
                }
            }
        } else {
            segments.push(Segment::Key(rest.to_owned()));
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn two_bad_enum_values_are_both_reported() {
        let text = "[channels.a]\nkind = \"nope\"\nmax_body_bytes = \"x\"\n\
                    [channels.b]\nkind = \"api\"\n\
                    [channels.b.tickets.routing]\nrule = \"sometimes\"\n";
        let first = Config::parse(text).unwrap_err();
        let more = super::more_problems(text, &first);
        let paths: Vec<&str> = std::iter::once(first.path.as_str())
            .chain(more.iter().map(|p| p.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                "channels.a.kind",
                "channels.a.max_body_bytes",
                "channels.b.tickets.routing.rule"
            ],
            "{more:?}"
        );
    }
}
