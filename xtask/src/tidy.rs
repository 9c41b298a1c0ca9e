//! Tests that keep the tree tidy: every Rust file opens with a `//!` doc saying what it is for, and no test
//! is switched off with an ignore attribute or left as a placeholder macro.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "node_modules" && !name.to_string_lossy().starts_with('.') {
                    rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn files() -> Vec<PathBuf> {
        let root = crate::root();
        let mut files = Vec::new();
        rust_files(&root.join("crates"), &mut files);
        rust_files(&root.join("xtask"), &mut files);
        assert!(files.len() > 50, "found only {} Rust files under {}", files.len(), root.display());
        files
    }

    #[test]
    fn every_rust_file_opens_with_a_module_doc() {
        let missing: Vec<_> = files()
            .into_iter()
            .filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!"))
            .collect();
        assert!(missing.is_empty(), "files without a `//!` module doc: {missing:#?}");
    }

    #[test]
    fn no_test_is_ignored_or_left_unwritten() {
        // Spelled in pieces so that this file does not match itself.
        let banned = [concat!("#[", "ignore"), concat!("todo", "!("), concat!("unimplemented", "!(")];
        let mut found = Vec::new();
        for file in files() {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if let Some(b) = banned.iter().find(|b| line.contains(**b)) {
                    found.push(format!("{}:{}: {b}", file.display(), n + 1));
                }
            }
        }
        assert!(found.is_empty(), "{found:#?}");
    }
}
