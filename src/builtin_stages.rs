//! The stage files shipped inside the binary: the repository's `stages/*.yaml`, comments
//! and all. `wsctl init` writes them into a user's repository, and `local` is the built-in
//! stage of `wsctl dev` wherever no `stages/local.yaml` exists.

/// `(name, YAML)` of every shipped stage, in promotion order.
pub const STAGES: [(&str, &str); 4] = [
    ("local", include_str!("../stages/local.yaml")),
    ("dev", include_str!("../stages/dev.yaml")),
    ("staging", include_str!("../stages/staging.yaml")),
    ("prod", include_str!("../stages/prod.yaml")),
];

/// The built-in local stage's YAML.
pub fn local() -> &'static str {
    STAGES[0].1
}
