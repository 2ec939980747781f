//! The API Gateway–shaped JSON events in `tests/fixtures/apigw/` of the workspace.

use std::path::PathBuf;

/// The placeholder the fixtures carry where a real API key goes.
pub const KEY_PLACEHOLDER: &str = "REPLACE_KEY";

/// `<workspace>/tests/fixtures/apigw`.
pub fn apigw_fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("fixtures").join("apigw")
}

/// The text of one fixture, e.g. `apigw_fixture("connect.json")`.
///
/// # Panics
/// If the file cannot be read (the message names the path and lists what is there).
pub fn apigw_fixture(name: &str) -> String {
    let path = apigw_fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        let available: Vec<String> = std::fs::read_dir(apigw_fixtures_dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        panic!("read fixture {}: {e} (available: {available:?})", path.display())
    })
}

/// A fixture with [`KEY_PLACEHOLDER`] replaced by `api_key` (which must be JSON-safe:
/// no `"` or `\`), for the `connect` and `authorizer_*` events.
pub fn apigw_fixture_with_key(name: &str, api_key: &str) -> String {
    assert!(!api_key.contains(['"', '\\']), "api key {api_key:?} would break the fixture's JSON");
    apigw_fixture(name).replace(KEY_PLACEHOLDER, api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_there_and_the_key_is_substituted() {
        for name in [
            "connect.json",
            "disconnect.json",
            "message_subscribe.json",
            "message_publish.json",
            "message_bad_json.json",
            "message_unknown_action.json",
            "authorizer_query.json",
            "authorizer_header.json",
        ] {
            assert!(!apigw_fixture(name).is_empty(), "{name}");
        }
        let s = apigw_fixture_with_key("authorizer_header.json", "wsk_live_abc");
        assert!(s.contains("\"x-api-key\": \"wsk_live_abc\"") && !s.contains(KEY_PLACEHOLDER), "{s}");
    }
}
