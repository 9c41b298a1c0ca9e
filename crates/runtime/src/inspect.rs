//! The security scan a plugin passes before it is compiled: size, format, hash, and an allow-list of imports.

use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

use crate::error::LoadError;

/// The interface every plugin may import, with the version it was written against.
pub const HOST_INTERFACE: &str = "plugwatch:plugin/host@0.1.0";

/// The WASI 0.2 interfaces a plugin may import. They are linked with nothing granted: no preopened
/// directories, no environment or arguments, no sockets, and every outgoing HTTP request refused.
pub const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// The export the host calls.
pub const HANDLE_EXPORT: &str = "handle";

/// What the scan learned about a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Lowercase hex sha256 of the component's bytes.
    pub sha256: String,
    pub size: usize,
    /// The component's top-level imports, as written in the binary.
    pub imports: Vec<String>,
    /// The component's top-level exports. Only `handle` is ever called; toolchains may add others
    /// (componentize-py exports its build-time `exports` interface).
    pub exports: Vec<String>,
}

/// Checks a component without compiling it.
pub fn inspect(bytes: &[u8], max_size: usize, expected_sha256: Option<&str>) -> Result<Inspection, LoadError> {
    if bytes.len() > max_size {
        return Err(LoadError::TooLarge { size: bytes.len(), limit: max_size });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    if Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule);
    }
    if !Parser::is_component(bytes) {
        return Err(LoadError::Invalid("unknown WebAssembly binary version or layer".into()));
    }
    let sha256 = hex::encode(Sha256::digest(bytes));
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(LoadError::HashMismatch { expected: expected.to_owned(), actual: sha256 });
    }

    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components are flattened by `parse_all`; only the outermost component's
    // imports and exports are the plugin's interface.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Invalid(e.to_string()))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }

    if let Some(bad) = imports.iter().find(|name| !import_allowed(name)) {
        return Err(LoadError::ForbiddenImport(bad.clone()));
    }
    if !exports.iter().any(|name| name == HANDLE_EXPORT) {
        return Err(LoadError::MissingExport);
    }
    Ok(Inspection { sha256, size: bytes.len(), imports, exports })
}

/// Whether a plugin may import `name` (`namespace:package/interface@version`).
pub fn import_allowed(name: &str) -> bool {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    if path == HOST_INTERFACE.split_once('@').map_or("", |(p, _)| p) {
        return version.starts_with("0.1.");
    }
    ALLOWED_WASI.contains(&path) && version.starts_with("0.2.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_package_interface_and_major_version() {
        assert!(import_allowed("plugwatch:plugin/host@0.1.0"));
        assert!(import_allowed("plugwatch:plugin/host@0.1.3"));
        assert!(!import_allowed("plugwatch:plugin/host@0.2.0"));
        assert!(import_allowed("wasi:cli/stdout@0.2.6"));
        assert!(import_allowed("wasi:http/outgoing-handler@0.2.0"));
        assert!(!import_allowed("wasi:cli/stdout@0.3.0"));
        assert!(!import_allowed("wasi:keyvalue/store@0.2.0"));
        assert!(!import_allowed("evil:net/raw-socket@1.0.0"));
        assert!(!import_allowed("wasi:cli/stdout"));
    }

    #[test]
    fn non_wasm_and_core_modules_are_told_apart() {
        assert!(matches!(inspect(b"PK\x03\x04zipzipzip", 1 << 20, None), Err(LoadError::NotWasm)));
        let core = wat::parse_str("(module)").unwrap();
        assert!(matches!(inspect(&core, 1 << 20, None), Err(LoadError::CoreModule)));
        assert!(matches!(inspect(&core, 4, None), Err(LoadError::TooLarge { size: 8, limit: 4 })));
    }
}
