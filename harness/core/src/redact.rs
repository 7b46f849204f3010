//! Redaction: credentials never reach a report, whatever text quotes them (helm
//! output, log lines, API errors, webhook messages).

/// Removes credentials from free text (helm output, log lines, errors): bearer
/// tokens, `token=`/`password=` values, kubeconfig key data and PEM private keys.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
            in_key = true;
            out.push_str("[REDACTED PRIVATE KEY]");
            continue;
        }
        if in_key {
            if line.contains("-----END") {
                in_key = false;
            }
            continue;
        }
        let mut l = line.to_string();
        for marker in [
            "Bearer ",
            "token=",
            "password=",
            "password: ",
            "client-key-data: ",
            "token: ",
        ] {
            let mut from = 0;
            while let Some(pos) = l[from..].find(marker) {
                let start = from + pos + marker.len();
                let end = l[start..]
                    .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
                    .map_or(l.len(), |e| start + e);
                if end > start {
                    l.replace_range(start..end, "[REDACTED]");
                }
                from = start + "[REDACTED]".len().min(l.len() - start);
            }
        }
        out.push_str(&l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_redacted() {
        let text = "Authorization: Bearer abc.def.ghi\nurl?token=s3cr3t&x=1 password=hunter2\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nclient-key-data: LS0tLS1\nfine";
        let r = redact(text);
        for secret in ["abc.def.ghi", "s3cr3t", "hunter2", "MHcCAQEE", "LS0tLS1"] {
            assert!(!r.contains(secret), "{secret} leaked: {r}");
        }
        assert!(
            r.contains("Bearer [REDACTED]") && r.ends_with("fine"),
            "{r}"
        );
    }
}
