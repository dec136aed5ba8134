//! The presets of SPEC §2.1, embedded from `policies/*.yaml` so the binary
//! works without that folder, and so the files a user reads are exactly the
//! policies the server runs.

/// The embedded presets: (name, YAML text).
pub const PRESETS: &[(&str, &str)] = &[
    ("secure", include_str!("../../policies/secure.yaml")),
    ("insecure", include_str!("../../policies/insecure.yaml")),
    ("lan", include_str!("../../policies/lan.yaml")),
];

/// The YAML text of a preset, by name.
pub fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The preset names, for error messages.
pub(crate) fn names() -> String {
    let v: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    v.join(", ")
}
