//! The shape the code keeps (docs/ARCHITECTURE.md, "What lives where"): files a reader can hold
//! (at most 600 lines; tests and tables aside), and roles that do not reach into each other.
//! Functions of at most 100 lines are clippy's `too_many_lines`, denied in CI.

use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn crate_sources(rel: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut out = Vec::new();
    sources(&root, &mut out);
    assert!(!out.is_empty(), "no sources under {}", root.display());
    out
}

/// Unit tests kept beside their module (`foo_tests.rs`, `tests.rs`) may run longer.
fn is_test_file(p: &Path) -> bool {
    let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name.ends_with("_tests")
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let mut long = Vec::new();
    for p in crate_sources("src")
        .into_iter()
        .chain(crate_sources("../ctl/src"))
    {
        let lines = fs::read_to_string(&p).expect("source file").lines().count();
        if lines > MAX_FILE_LINES && !is_test_file(&p) {
            long.push(format!("{} ({lines} lines)", p.display()));
        }
    }
    assert!(long.is_empty(), "split these: {long:?}");
}

/// The module a file belongs to at the top of the crate (`speaker` for src/speaker/net.rs,
/// `clock` for src/clock.rs).
fn top_module(src: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Which of `roles` the text of a file imports, by path from the crate's root.
fn imported<'a>(text: &str, roles: &[&'a str]) -> Vec<&'a str> {
    roles
        .iter()
        .copied()
        .filter(|r| {
            let path = format!("crate::{r}");
            text.match_indices(&path).any(|(i, _)| {
                let next = text[i + path.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .collect()
}

#[test]
fn roles_do_not_import_each_other_and_the_layers_below_import_no_role() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // The two roles, and the process that runs them (which may use both).
    let roles = ["controller", "speaker", "daemon"];
    // The layers below the roles: shared by both, owning nothing of either.
    let below = [
        "api", "audio", "clock", "config", "dsp", "net", "sync", "wire", "notify",
    ];
    let mut wrong = Vec::new();
    for p in crate_sources("src") {
        let top = top_module(&src, &p);
        let text = fs::read_to_string(&p).expect("source file");
        let reached = imported(&text, &roles);
        let bad: Vec<_> = match top.as_str() {
            "controller" => reached.into_iter().filter(|r| *r != "controller").collect(),
            "speaker" => reached.into_iter().filter(|r| *r != "speaker").collect(),
            t if below
                .iter()
                .any(|b| t == *b || t.starts_with(&format!("{b}_"))) =>
            {
                reached
            }
            _ => Vec::new(),
        };
        if !bad.is_empty() {
            wrong.push(format!("{} imports {bad:?}", p.display()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn the_import_check_sees_an_upward_import() {
    // The check above must be able to fail.
    let text =
        "use crate::speaker::volume::gain_for;\nuse crate::clock::Nanos;\nuse crate::daemons;\n";
    assert_eq!(
        imported(text, &["controller", "speaker", "daemon"]),
        ["speaker"]
    );
    assert!(is_test_file(Path::new("src/speaker/devclock_tests.rs")));
    assert!(!is_test_file(Path::new("src/speaker/devclock.rs")));
}
