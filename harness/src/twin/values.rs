//! Redaction of a release's user-supplied values before a twin writes them down.
//!
//! A twin is committed to a repository, and the values a release was installed with
//! (`helm install --values/--set`) often carry credentials: database passwords, API
//! tokens, TLS keys. [`redact`] replaces them in place with [`REDACTED`] and says what
//! it replaced and why, so a capture can list what a replay must be given again.
//!
//! It goes by key names and by content, and prefers redacting too much: a value taken
//! out by mistake makes a replay fail where it is used, which is visible and is fixed
//! by supplying it, while a credential that reaches a repository cannot be taken back.
//! So `secretName` and `existingSecret` (names of Secret objects), `keyName`, `author`
//! or `monkey` are redacted too.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// What a redacted value is replaced with (a string, whatever it was).
pub const REDACTED: &str = "REDACTED";

/// Parts of key names (compared case-insensitively) whose values are credentials, or
/// may be: `dbPassword`, `apiKey`, `privateKey`, `key`, `tlsCert`, `basicAuth`,
/// `clientSecret`, `accessToken`, `credentials`.
const SECRET_KEY_PARTS: [&str; 9] = [
    "password",
    "passwd",
    "token",
    "secret",
    "key",
    "certificate",
    "cert",
    "credential",
    "auth",
];

/// The start of a PEM block (a certificate, a private key).
const PEM_MARKER: &str = "-----BEGIN ";

/// Base64 strings shorter than this are not decoded to look for a PEM block: the
/// shortest PEM header alone encodes to more.
const MIN_BASE64_PEM: usize = 16;

/// One value that [`redact`] replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redaction {
    /// Where the value was, e.g. `db.auth.password` or `certs[0]`; a key that holds
    /// `.`, `[` or `]` is quoted: `annotations["example.com/key"]`.
    pub path: String,
    /// Why: "key name `password`", "PEM block" or "base64-encoded PEM block".
    pub reason: String,
}

/// Replaces, in place, every credential in `values` with [`REDACTED`] and returns
/// where and why.
///
/// * Under a key whose name contains one of `password`, `passwd`, `token`, `secret`,
///   `key`, `certificate`, `cert`, `credential` or `auth` (any case), every string or
///   number is redacted, however deep below the key it is (a map or list under such a
///   key is walked). A number becomes the string `REDACTED`, so a chart whose schema
///   wants a number fails at replay instead of running with a made-up value. Booleans
///   and nulls stay: `auth.enabled: true` is no secret.
/// * Anywhere, a string that holds a PEM block (`-----BEGIN `), or is base64 of one
///   (as a Secret's `tls.crt` is), is redacted.
pub fn redact(values: &mut Value) -> Vec<Redaction> {
    let mut redactions = Vec::new();
    walk(values, String::new(), None, &mut redactions);
    redactions
}

/// Walks `value` at `path`; `secret_key` is the nearest enclosing key with a secret
/// name, if any.
fn walk(value: &mut Value, path: String, secret_key: Option<&str>, out: &mut Vec<Redaction>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let child_key = is_secret_key(key).then_some(key.as_str()).or(secret_key);
                walk(child, key_path(&path, key), child_key, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                walk(child, format!("{path}[{i}]"), secret_key, out);
            }
        }
        Value::String(_) | Value::Number(_) => {
            if let Some(reason) = reason(value, secret_key) {
                *value = Value::String(REDACTED.to_string());
                out.push(Redaction { path, reason });
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Why a string or number leaf is redacted, if it is.
fn reason(value: &Value, secret_key: Option<&str>) -> Option<String> {
    if let Some(key) = secret_key {
        return Some(format!("key name `{key}`"));
    }
    let text = value.as_str()?;
    if text.contains(PEM_MARKER) {
        return Some("PEM block".to_string());
    }
    is_base64_pem(text).then(|| "base64-encoded PEM block".to_string())
}

/// Whether a key's name says its value is, or holds, a credential.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// The path of `key` below `parent`.
fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && !key.contains(['.', '[', ']']);
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// Whether `text` is base64 (line breaks allowed, padding optional) of bytes that
/// hold a PEM block.
fn is_base64_pem(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() < MIN_BASE64_PEM {
        return false;
    }
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    lenient.decode(compact).is_ok_and(|bytes| {
        bytes
            .windows(PEM_MARKER.len())
            .any(|w| w == PEM_MARKER.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nRkFLRSBGSVhUVVJF\n-----END CERTIFICATE-----\n";

    /// The redacted values, and the redactions sorted by path.
    fn redacted(mut values: Value) -> (Value, Vec<(String, String)>) {
        let mut found: Vec<_> = redact(&mut values)
            .into_iter()
            .map(|r| (r.path, r.reason))
            .collect();
        found.sort();
        (values, found)
    }

    fn pair(path: &str, reason: &str) -> (String, String) {
        (path.to_string(), reason.to_string())
    }

    #[test]
    fn key_names_that_say_secret_are_redacted() {
        let table = [
            ("password", true),
            ("dbPassword", true),
            ("PASSWD", true),
            ("accessToken", true),
            ("clientSecret", true),
            ("apiKey", true),
            ("accessKey", true),
            ("privateKey", true),
            ("key", true),
            ("tlsCert", true),
            ("certificate", true),
            ("credentials", true),
            ("basicAuth", true),
            // Over-redaction, on purpose (see the module doc).
            ("secretName", true),
            ("existingSecret", true),
            ("keyName", true),
            ("author", true),
            // Not secret.
            ("host", false),
            ("replicas", false),
            ("username", false),
            ("image", false),
        ];
        for (key, secret) in table {
            let (values, found) = redacted(json!({ key: "v" }));
            let expected = if secret { REDACTED } else { "v" };
            assert_eq!(values[key], expected, "{key}");
            assert_eq!(found.len(), usize::from(secret), "{key}");
        }
    }

    #[test]
    fn everything_below_a_secret_key_is_redacted_with_its_path() {
        let (values, found) = redacted(json!({
            "db": {"host": "db.local", "auth": {"user": "app", "password": "p", "port": 5432,
                   "enabled": true, "hint": null}},
            "tokens": ["a", "b"],
            "image": {"tag": "1.0"},
        }));
        assert_eq!(
            values,
            json!({
                "db": {"host": "db.local", "auth": {"user": REDACTED, "password": REDACTED,
                       "port": REDACTED, "enabled": true, "hint": null}},
                "tokens": [REDACTED, REDACTED],
                "image": {"tag": "1.0"},
            })
        );
        assert_eq!(
            found,
            [
                pair("db.auth.password", "key name `password`"),
                pair("db.auth.port", "key name `auth`"),
                pair("db.auth.user", "key name `auth`"),
                pair("tokens[0]", "key name `tokens`"),
                pair("tokens[1]", "key name `tokens`"),
            ]
        );
    }

    #[test]
    fn pem_blocks_are_redacted_wherever_they_are() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(PEM);
        let wrapped: String = encoded
            .as_bytes()
            .chunks(20)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        let unpadded = encoded.trim_end_matches('=').to_string();
        let (values, found) = redacted(json!({
            "tls": {"crt": PEM},
            "certs": [format!("bundle:\n{PEM}"), "plain"],
            "ca": {"bundle": encoded},
            "wrapped": wrapped,
            "unpadded": unpadded,
            "notPem": base64::engine::general_purpose::STANDARD.encode("just some text here"),
            "short": "YWJj",
        }));
        assert_eq!(values["tls"]["crt"], REDACTED);
        assert_eq!(values["certs"][1], REDACTED, "below the `certs` key");
        assert_eq!(values["notPem"], "anVzdCBzb21lIHRleHQgaGVyZQ==");
        assert_eq!(values["short"], "YWJj");
        assert_eq!(
            found,
            [
                pair("ca.bundle", "base64-encoded PEM block"),
                pair("certs[0]", "key name `certs`"),
                pair("certs[1]", "key name `certs`"),
                pair("tls.crt", "PEM block"),
                pair("unpadded", "base64-encoded PEM block"),
                pair("wrapped", "base64-encoded PEM block"),
            ]
        );
    }

    #[test]
    fn keys_with_dots_are_quoted_in_paths() {
        let (_, found) = redacted(json!({
            "annotations": {"example.com/api-key": "k", "plain": PEM},
            "": {"token": "t"},
        }));
        assert_eq!(
            found,
            [
                pair("[\"\"].token", "key name `token`"),
                pair("annotations.plain", "PEM block"),
                pair(
                    "annotations[\"example.com/api-key\"]",
                    "key name `example.com/api-key`"
                ),
            ]
        );
    }

    #[test]
    fn values_without_credentials_are_left_alone() {
        let original = json!({"replicas": 3, "image": {"repository": "nginx", "tag": "1.27"},
                              "flags": [true, null, 1.5], "empty": {}});
        let (values, found) = redacted(original.clone());
        assert_eq!(values, original);
        assert!(found.is_empty());
    }

    #[test]
    fn a_real_release_config_loses_its_password_and_certificate() {
        let release = crate::twin::release::decode(
            include_str!("testdata/fixcrd.v2.secret.release").as_bytes(),
        )
        .unwrap();
        let (values, found) = redacted(release.config);
        assert_eq!(
            found,
            [
                pair("db.password", "key name `password`"),
                pair("tls.crt", "PEM block"),
            ]
        );
        assert_eq!(values["greeting"], "hi from the user");
        assert_eq!(values["replicas"], 3);
    }
}
