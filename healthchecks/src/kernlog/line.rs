//! One kernel log line: its timestamp prefix (if any) and the Xid/SXid event it carries (if any).
//!
//! Hand-written over bytes rather than regexes: the grammar is small, and every slice is taken right after an
//! ASCII byte, so no input (garbage bytes turned into U+FFFD, NULs, CRs) can make it panic.

use super::KernelEventKind;

/// An event read from one line, before the catalog is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// Xid (GPU) or SXid (NVSwitch).
    pub kind: KernelEventKind,
    /// PCI address as written, without the `PCI:` prefix.
    pub pci: String,
    /// Event number.
    pub code: u64,
    /// The text after the code (after the severity for SXids), trimmed.
    pub message: String,
    /// Timestamp as written in the line, when it has one.
    pub timestamp: Option<String>,
    /// SXid only: `Fatal` → true, `Non-fatal` → false, not stated → None.
    pub fatal: Option<bool>,
    /// SXid only: a `Severity N Engine instance …` or `Data {…}` line that details the event logged just before.
    pub continuation: bool,
}

/// What one line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// An Xid or SXid event.
    Event(ParsedEvent),
    /// The line mentions an Xid or SXid but cannot be read (no code, bad PCI address).
    Unparsed(KernelEventKind),
    /// Anything else.
    Other,
}

/// Reads one kernel log line (dmesg, `dmesg -T`, `journalctl -k`, syslog, ISO 8601 or /dev/kmsg records).
pub fn parse_line(raw: &str) -> LineOutcome {
    let line = raw.trim_end_matches(['\r', '\n']).trim();
    let (mut timestamp, body) = split_timestamp(line);
    let Some((kind, at)) = find_marker(body) else {
        return match mentions(body) {
            Some(kind) => LineOutcome::Unparsed(kind),
            None => LineOutcome::Other,
        };
    };
    if timestamp.is_none() {
        // `host kern: warning: [2026-04-22T21:25:20.45Z]: NVRM: …` and `kernel: [ 12.3] …` forms.
        timestamp = bracketed_timestamp(&body[..at]);
    }
    let marker_len = match kind {
        KernelEventKind::Xid => "Xid (".len(),
        KernelEventKind::Sxid => "SXid (".len(),
    };
    match parse_after_marker(&body[at + marker_len..], kind) {
        Some(mut event) => {
            event.timestamp = timestamp;
            LineOutcome::Event(event)
        }
        None => LineOutcome::Unparsed(kind),
    }
}

/// `PCI:DDDD:BB:DD[.F]): CODE[, rest]` after `Xid (` / `SXid (`.
fn parse_after_marker(rest: &str, kind: KernelEventKind) -> Option<ParsedEvent> {
    let rest = rest.strip_prefix("PCI:")?;
    let close = rest.find(')')?;
    let pci = &rest[..close];
    if !valid_pci(pci) {
        return None;
    }
    let after = rest[close + 1..].strip_prefix(':')?.trim_start();
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let code: u64 = after[..digits].parse().ok()?;
    let tail = &after[digits..];
    let message = match tail.as_bytes().first() {
        None => "",
        Some(b',') => tail[1..].trim(),
        Some(b) if b.is_ascii_whitespace() => tail.trim(),
        // `79x, …`: the code runs into other text; not a number kiln can trust.
        Some(_) => return None,
    };
    let mut event = ParsedEvent {
        kind,
        pci: pci.to_string(),
        code,
        message: message.to_string(),
        timestamp: None,
        fatal: None,
        continuation: false,
    };
    if kind == KernelEventKind::Sxid {
        let (fatal, msg) = split_severity(message);
        event.fatal = fatal;
        event.continuation =
            fatal.is_none() && (msg.starts_with("Severity ") || msg.starts_with("Data {"));
        event.message = msg.to_string();
    }
    Some(event)
}

/// `Fatal, text` / `Non-fatal, text` → (Some(flag), text).
fn split_severity(message: &str) -> (Option<bool>, &str) {
    let (word, rest) = match message.find(',') {
        Some(i) => (message[..i].trim(), message[i + 1..].trim()),
        None => (message.trim(), ""),
    };
    let lower = word.to_ascii_lowercase();
    match lower.as_str() {
        "fatal" => (Some(true), rest),
        "non-fatal" | "nonfatal" | "non fatal" => (Some(false), rest),
        _ => (None, message),
    }
}

/// `DDDD:BB:DD` or `DDDD:BB:DD.F` in hex (domain 4 to 8 digits).
fn valid_pci(pci: &str) -> bool {
    let (addr, function) = match pci.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (pci, None),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let hex = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    parts.len() == 3
        && hex(parts[0], 4, 8)
        && hex(parts[1], 2, 2)
        && hex(parts[2], 2, 2)
        && function.is_none_or(|f| f.len() == 1 && matches!(f.as_bytes()[0], b'0'..=b'7'))
}

/// Where `SXid (` or `Xid (` starts, as a word.
fn find_marker(body: &str) -> Option<(KernelEventKind, usize)> {
    if let Some(i) = find_word(body, "SXid (") {
        return Some((KernelEventKind::Sxid, i));
    }
    find_word(body, "Xid (").map(|i| (KernelEventKind::Xid, i))
}

/// Does the line name an Xid/SXid at all (as a word)? Such a line that [`find_marker`] cannot read is unparsed.
fn mentions(body: &str) -> Option<KernelEventKind> {
    if find_word(body, "SXid").is_some() {
        Some(KernelEventKind::Sxid)
    } else if find_word(body, "Xid").is_some() {
        Some(KernelEventKind::Xid)
    } else {
        None
    }
}

/// First occurrence of `needle` not glued to a letter or digit on its left (and, for a bare word, on its right).
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(off) = hay[from..].find(needle) {
        let at = from + off;
        let end = at + needle.len();
        let left_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let right_ok =
            needle.ends_with('(') || end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if left_ok && right_ok {
            return Some(at);
        }
        from = end;
    }
    None
}

/// Splits a leading timestamp off the line: /dev/kmsg records, `[seconds]`, `[ctime]`, ISO 8601 and syslog.
fn split_timestamp(line: &str) -> (Option<String>, &str) {
    if let Some((ts, rest)) = kmsg_prefix(line) {
        return (Some(ts), rest);
    }
    if let Some(inner_end) = line.strip_prefix('[').and_then(|r| r.find(']')) {
        let inner = line[1..1 + inner_end].trim();
        if is_timestamp(inner) {
            return (Some(inner.to_string()), line[inner_end + 2..].trim_start());
        }
    }
    if let Some(len) = iso_len(line) {
        return (Some(line[..len].to_string()), line[len..].trim_start());
    }
    if let Some(len) = syslog_len(line) {
        return (Some(line[..len].to_string()), line[len..].trim_start());
    }
    (None, line)
}

/// `PRIORITY,SEQ,USEC,FLAGS;message` as read from /dev/kmsg; the timestamp is USEC as written.
fn kmsg_prefix(line: &str) -> Option<(String, &str)> {
    let semi = line.find(';')?;
    let head = &line[..semi];
    let fields: Vec<&str> = head.split(',').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if fields.len() >= 4 && numeric(fields[0]) && numeric(fields[1]) && numeric(fields[2]) {
        Some((fields[2].to_string(), line[semi + 1..].trim_start()))
    } else {
        None
    }
}

/// The first `[…]` in `text` whose content is a timestamp.
fn bracketed_timestamp(text: &str) -> Option<String> {
    let mut from = 0;
    while let Some(open) = text[from..].find('[') {
        let start = from + open + 1;
        let close = text[start..].find(']')?;
        let inner = text[start..start + close].trim();
        if is_timestamp(inner) {
            return Some(inner.to_string());
        }
        from = start + close + 1;
    }
    None
}

/// `12345.678901` (dmesg), `Sun Feb 23 16:24:18 2025` (dmesg -T) or ISO 8601.
fn is_timestamp(s: &str) -> bool {
    let seconds = match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    };
    seconds || is_ctime(s) || iso_len(s) == Some(s.len())
}

/// `Www Mmm [ d]d hh:mm:ss yyyy`.
fn is_ctime(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    words.len() == 5
        && WEEKDAYS.contains(&words[0])
        && MONTHS.contains(&words[1])
        && is_day(words[2])
        && is_clock(words[3])
        && words[4].len() == 4
        && words[4].bytes().all(|b| b.is_ascii_digit())
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn is_day(s: &str) -> bool {
    (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `hh:mm:ss` with an optional `.fraction`.
fn is_clock(s: &str) -> bool {
    let (clock, frac) = match s.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (s, None),
    };
    let b = clock.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()))
}

/// Length of a leading ISO 8601 date-time: `YYYY-MM-DD[T ]hh:mm:ss[.,frac][Z|±hh[:]mm]`.
fn iso_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shape = (0..4).all(digit)
        && at(4, b'-')
        && digit(5)
        && digit(6)
        && at(7, b'-')
        && digit(8)
        && digit(9)
        && (at(10, b'T') || at(10, b' '))
        && digit(11)
        && digit(12)
        && at(13, b':')
        && digit(14)
        && digit(15)
        && at(16, b':')
        && digit(17)
        && digit(18);
    if !shape {
        return None;
    }
    let mut i = 19;
    if at(i, b'.') || at(i, b',') {
        let start = i + 1;
        i = start;
        while digit(i) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if at(i, b'Z') {
        i += 1;
    } else if at(i, b'+') || at(i, b'-') {
        if digit(i + 1) && digit(i + 2) && at(i + 3, b':') && digit(i + 4) && digit(i + 5) {
            i += 6;
        } else if (1..=4).all(|k| digit(i + k)) {
            i += 5;
        } else {
            return None;
        }
    }
    Some(i)
}

/// Length of a leading syslog/journalctl `Mmm [ d]d hh:mm:ss[.frac]`.
fn syslog_len(s: &str) -> Option<usize> {
    let month = s.get(..3)?;
    if !MONTHS.contains(&month) || s.as_bytes().get(3) != Some(&b' ') {
        return None;
    }
    let rest = &s[4..];
    let day_start = rest.len() - rest.trim_start().len();
    let rest = rest.trim_start();
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if !is_day(&rest[..day_len]) || rest.as_bytes().get(day_len) != Some(&b' ') {
        return None;
    }
    let clock_start = day_len + 1;
    let clock_len = rest[clock_start..]
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b':' || *b == b'.')
        .count();
    if !is_clock(&rest[clock_start..clock_start + clock_len]) {
        return None;
    }
    Some(4 + day_start + clock_start + clock_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> ParsedEvent {
        match parse_line(line) {
            LineOutcome::Event(e) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn timestamp_styles() {
        let cases = [
            (
                "[  812.123456] NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("812.123456"),
            ),
            (
                "[Sun Feb 23 16:24:18 2025] NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("Sun Feb 23 16:24:18 2025"),
            ),
            (
                "2025-02-23T16:24:18.123456+00:00 gpu7 kernel: NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("2025-02-23T16:24:18.123456+00:00"),
            ),
            (
                "2025-02-23T16:24:18+0000 gpu7 kernel: NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("2025-02-23T16:24:18+0000"),
            ),
            (
                "2025-02-23T16:24:18,123456+00:00 NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("2025-02-23T16:24:18,123456+00:00"),
            ),
            (
                "Feb 23 16:24:18 gpu7 kernel: NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("Feb 23 16:24:18"),
            ),
            (
                "Feb  3 16:24:18.004512 gpu7 kernel: NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("Feb  3 16:24:18.004512"),
            ),
            (
                "4,1234,5678901,-;NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("5678901"),
            ),
            (
                "10.0.0.9: kern: err: [2026-04-22T21:25:20.466440686Z]: NVRM: Xid (PCI:0000:18:00): 79, x",
                Some("2026-04-22T21:25:20.466440686Z"),
            ),
            ("NVRM: Xid (PCI:0000:18:00): 79, x", None),
        ];
        for (line, ts) in cases {
            let e = event(line);
            assert_eq!(e.timestamp.as_deref(), ts, "{line}");
            assert_eq!(
                (e.code, e.pci.as_str(), e.message.as_str()),
                (79, "0000:18:00", "x"),
                "{line}"
            );
        }
    }

    #[test]
    fn sxid_severity_and_continuations() {
        let e = event(
            "nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error",
        );
        assert_eq!(e.kind, KernelEventKind::Sxid);
        assert_eq!((e.fatal, e.continuation), (Some(false), false));
        assert_eq!(e.message, "Link 32 egress non-posted PRIV error");
        let e = event(
            "nvidia-nvswitch3: SXid (PCI:0000:c5:00.0): 20034, Fatal, Link 24 LTSSM Fault Up",
        );
        assert_eq!(e.fatal, Some(true));
        let e = event(
            "nvidia-nvswitch3: SXid (PCI:0000:c5:00.0): 20034, Severity 1 Engine instance 24 Sub-engine instance 00",
        );
        assert_eq!((e.fatal, e.continuation), (None, true));
        let e = event("nvidia-nvswitch3: SXid (PCI:0000:c5:00.0): 20034, Data {0x0, 0x1}");
        assert!(e.continuation);
    }

    #[test]
    fn unreadable_mentions_are_unparsed_and_others_ignored() {
        for line in [
            "NVRM: Xid (PCI:0000:2a:00): garbled",
            "NVRM: Xid (43, pid: 5678): stopped",
            "NVRM: Xid (PCI:00zz:18:00): 79, bad hex",
            "NVRM: Xid (PCI:0000:18:00): 79x, glued",
            "NVRM: Xid (PCI:0000:18:00.9): 79, function out of range",
            "NVRM: Xid 79 without parentheses",
        ] {
            assert_eq!(
                parse_line(line),
                LineOutcome::Unparsed(KernelEventKind::Xid),
                "{line}"
            );
        }
        assert_eq!(
            parse_line("nvidia-nvswitch1: SXid (PCI:0000:aa:00.0)"),
            LineOutcome::Unparsed(KernelEventKind::Sxid)
        );
        for line in [
            "",
            "[  813.000] nvidia-nvswitch0: link up",
            "systemd[1]: Started xid-exporter",
            "XidCounter=3",
        ] {
            assert_eq!(parse_line(line), LineOutcome::Other, "{line}");
        }
    }
}
