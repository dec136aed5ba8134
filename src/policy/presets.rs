//! STUB: the policy engine helper replaces this file.
/// The embedded presets: (name, YAML text).
pub const PRESETS: &[(&str, &str)] = &[];
