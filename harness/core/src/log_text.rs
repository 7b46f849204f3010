//! What a component's log says about why it failed: the one line worth showing of a
//! log tail or a multi-line error, for messages and reports.

/// The prefix the engine's `errors::log_tail` puts before each log line.
const TAIL_PREFIX: &str = "| ";

/// Whether a log line reports a port that was already taken (Go's `bind: address
/// already in use`, from etcd, kube-apiserver or kube-controller-manager).
pub fn mentions_port_clash(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("eaddrinuse")
}

/// How telling a log line is about why a component failed; higher is better.
fn severity(line: &str) -> u8 {
    if mentions_port_clash(line) {
        return 3;
    }
    let level = klog_level(line).or_else(|| json_level(line));
    if matches!(level, Some("F" | "fatal" | "panic" | "dpanic"))
        || line.starts_with("panic:")
        || line.starts_with("fatal error:")
    {
        return 2;
    }
    if matches!(level, Some("E" | "error"))
        || line.starts_with("Error:")
        || line.starts_with("error:")
    {
        return 1;
    }
    0
}

/// The level letter of a klog line (`E1130 10:11:12.345678   4242 run.go:74] ...`).
fn klog_level(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let header = b.len() > 6
        && matches!(b[0], b'I' | b'W' | b'E' | b'F')
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' ';
    header.then(|| &line[..1])
}

/// The level of a JSON log line (etcd's zap: `{"level":"fatal",...}`).
fn json_level(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('{')?;
    let at = rest.find("\"level\"")? + "\"level\"".len();
    let rest = rest[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

/// The log line that best says why a component failed: the first that reports a taken
/// port, else the first at fatal level, else the first at error level (klog `F`/`E`,
/// zap `"level":"fatal"`/`"error"`, cobra's `Error:`). `tail` is log text, with or
/// without `log_tail`'s `  | ` prefixes (which are not part of the answer).
///
/// The first rather than the last: later lines are usually consequences (shutdown
/// messages, a stack trace) of the first failure.
pub fn first_meaningful_line(tail: &str) -> Option<&str> {
    let mut best: Option<(u8, &str)> = None;
    for line in tail.lines() {
        let trimmed = line.trim_start();
        let line = trimmed.strip_prefix(TAIL_PREFIX).unwrap_or(trimmed).trim();
        let s = severity(line);
        if s > 0 && best.is_none_or(|(b, _)| s > b) {
            best = Some((s, line));
        }
    }
    best.map(|(_, l)| l)
}

/// One line for a multi-line error (e.g. `{e:#}` of a cluster error with log lines):
/// its first line and, when the rest carries a meaningful log line that the first line
/// does not already say, that line too. For summaries that have room for one line.
pub fn summary_line(error: &str) -> String {
    let (first, rest) = error.split_once('\n').unwrap_or((error, ""));
    let first = first.trim_end();
    match first_meaningful_line(rest) {
        Some(cause) if !first.contains(cause) => {
            format!("{}: {cause}", first.trim_end_matches([':', ';']))
        }
        _ => first.to_string(),
    }
}
