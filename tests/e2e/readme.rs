//! The README's config walk-through stays true: its TOML snippets, added to the shipped config,
//! pass `deskgate check-config` (with the credential files they name standing in a temporary
//! directory).

#[test]
fn the_readme_config_walk_through_passes_check_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## A config in ten minutes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has its config walk-through");
    let snippets: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    assert!(snippets.len() >= 3, "{snippets:?}");

    let dir = tempfile::tempdir().unwrap();
    let mut config = std::fs::read_to_string(format!("{root}/config/deskgate.toml")).unwrap();
    for snippet in &snippets {
        config.push('\n');
        config.push_str(snippet);
    }
    let credentials = "/run/credentials/deskgate.service/";
    for name in ["imap-support", "smtp-password"] {
        std::fs::write(dir.path().join(name), "secret\n").unwrap();
    }
    let config = config.replace(credentials, &format!("{}/", dir.path().display()));
    let path = dir.path().join("walk-through.toml");
    std::fs::write(&path, config).unwrap();

    let check = test_kit::check_config(&path, None);
    assert!(check.ok, "{}", check.stderr);
}
