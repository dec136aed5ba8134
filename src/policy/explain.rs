//! STUB: the policy engine helper replaces this file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {}
