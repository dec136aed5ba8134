//! The presets of SPEC §2.1, embedded from `policies/*.yaml` so the binary
//! works without that folder, and so the files a user reads are exactly the
//! policies the server runs.

/// Where dashgate's own routes live in upstream mode (SPEC §6): every
/// other path belongs to the upstream. The presets' paths (sign-in, health,
/// the sign-in page's assets) are compiled under it there, so nothing of
/// the upstream is public unless a rule of the user's says so.
pub const OWN_PREFIX: &str = "/.dashgate";

/// A preset's path in upstream mode.
pub(crate) fn own_path(path: &str) -> String {
    format!("{OWN_PREFIX}{path}")
}

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
