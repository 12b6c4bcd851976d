//! Text for humans and shells: escaped paths, quoted shell words.

/// A path for humans and JSON: printable UTF-8 as is, everything else escaped.
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Quote `s` for the shell.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        for (input, expected) in [
            (&b"/usr/bin"[..], "/usr/bin"),
            (b"/a\nb", "/a\\nb"),
            (b"/\xff", "/\\xff"),
            (b"/caf\xc3\xa9", "/caf\u{e9}"),
            (b"/a\\b", "/a\\\\b"),
        ] {
            assert_eq!(escape_path(input), expected);
        }
    }

    #[test]
    fn sq_table() {
        assert_eq!(sq("a b"), "'a b'");
        assert_eq!(sq("it's"), "'it'\\''s'");
        assert_eq!(sq(""), "''");
    }
}
