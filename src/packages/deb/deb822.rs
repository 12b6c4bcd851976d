//! Parsing Debian control data (deb822): the `control` file of a package, and later `Packages`
//! and `Release` indexes. Pure functions over text; errors name the line.
//!
//! A paragraph is a list of `Field: value` lines; a line starting with a space or tab continues
//! the previous field; blank lines separate paragraphs; lines starting with `#` are comments.
//! Field names are matched case-insensitively, as Debian policy says.

/// One paragraph: fields in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paragraph {
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), with continuation lines joined by `\n`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {line}: expected `Field: value`, found `{text}`")]
    NotAField { line: usize, text: String },
    #[error("line {line}: continuation line before any field")]
    Continuation { line: usize },
    #[error("line {line}: field `{field}` appears twice in one paragraph")]
    Duplicate { line: usize, field: String },
}

/// Parse every paragraph of `text`.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, ParseError> {
    let mut out = Vec::new();
    for_each(text, |p| {
        out.push(p);
        Ok(())
    })?;
    Ok(out)
}

/// Call `f` with each paragraph of `text` in turn, without holding them all (indexes are large).
pub fn for_each<E: From<ParseError>>(text: &str, mut f: impl FnMut(Paragraph) -> Result<(), E>) -> Result<(), E> {
    let mut cur = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                f(std::mem::take(&mut cur))?;
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = cur.fields.last_mut() else {
                return Err(ParseError::Continuation { line: line_no }.into());
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::NotAField { line: line_no, text: line.chars().take(60).collect() }.into());
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError::NotAField { line: line_no, text: line.chars().take(60).collect() }.into());
        }
        if cur.get(name).is_some() {
            return Err(ParseError::Duplicate { line: line_no, field: name.to_string() }.into());
        }
        cur.fields.push((name.to_string(), value.trim().to_string()));
    }
    if !cur.fields.is_empty() {
        f(cur)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = "Package: hello\nVersion: 2.10-3\nDescription: greet\n the world\n .\n politely\n\n# c\nPackage: b\n";
        let paras = parse(ok).unwrap();
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("package"), Some("hello"));
        assert_eq!(paras[0].get("Description"), Some("greet\nthe world\n.\npolitely"));
        assert_eq!(paras[1].get("Package"), Some("b"));
        let bad: &[(&str, ParseError)] = &[
            (" leading", ParseError::Continuation { line: 1 }),
            ("Package: a\nno colon here", ParseError::NotAField { line: 2, text: "no colon here".into() }),
            ("Bad Name: x", ParseError::NotAField { line: 1, text: "Bad Name: x".into() }),
            ("A: 1\na: 2", ParseError::Duplicate { line: 2, field: "a".into() }),
        ];
        for (text, expected) in bad {
            assert_eq!(parse(text).as_ref().err(), Some(expected), "{text:?}");
        }
    }

    proptest::proptest! {
        /// Indexes and control files are untrusted: any text parses or fails, never panics.
        #[test]
        fn any_text_parses_or_fails(text in "[A-Za-z0-9:# .,|()<>=~+-]{0,40}(\n[ A-Za-z0-9:# .,|()<>=~+-]{0,40}){0,6}") {
            if let Ok(paras) = parse(&text) {
                for p in paras {
                    let _ = p.get("Package");
                }
            }
        }
    }
}
