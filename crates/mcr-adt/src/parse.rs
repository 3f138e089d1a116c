//! A small strict HL7 v2 (ER7, "pipe and hat") parser: segments split on carriage returns,
//! the field, component, repetition, escape and subcomponent separators taken from MSH-1 and
//! MSH-2, escape sequences undone. It reads what the ADT interpreter asks for and nothing
//! more; it never panics, whatever the bytes (see the property test).

use std::fmt;

/// Why a message could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message is not UTF-8 text")]
    NotText,
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH-1 and MSH-2 do not give five distinct separators (e.g. |^~\\&)")]
    BadSeparators,
    #[error("segment {0} has a name that is not three upper-case letters or digits")]
    BadSegmentName(usize),
}

/// The separators a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Separators {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

impl Separators {
    /// `text` with every separator escaped, for writing into a field.
    pub fn escape(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let seq = if c == self.field {
                "F"
            } else if c == self.component {
                "S"
            } else if c == self.repetition {
                "R"
            } else if c == self.escape {
                "E"
            } else if c == self.subcomponent {
                "T"
            } else if c == '\r' || c == '\n' {
                out.push(' ');
                continue;
            } else {
                out.push(c);
                continue;
            };
            out.push(self.escape);
            out.push_str(seq);
            out.push(self.escape);
        }
        out
    }

    /// Undo escape sequences (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`); other sequences (formatting,
    /// hexadecimal) are dropped, an unterminated one is kept as written.
    pub fn unescape(&self, raw: &str) -> String {
        if !raw.contains(self.escape) {
            return raw.to_owned();
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find(self.escape) {
            out.push_str(&rest[..i]);
            let after = &rest[i + self.escape.len_utf8()..];
            match after.find(self.escape) {
                Some(j) => {
                    match &after[..j] {
                        "F" => out.push(self.field),
                        "S" => out.push(self.component),
                        "T" => out.push(self.subcomponent),
                        "R" => out.push(self.repetition),
                        "E" => out.push(self.escape),
                        _ => {}
                    }
                    rest = &after[j + self.escape.len_utf8()..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// One segment: its name and its fields as written (still escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub name: &'a str,
    /// `fields[n]` is field n (SEG-n); `fields[0]` is the name. For MSH, `fields[1]` is the
    /// field separator and `fields[2]` the encoding characters, as the standard numbers them.
    fields: Vec<&'a str>,
}

/// A parsed message, borrowing the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub separators: Separators,
    pub segments: Vec<Segment<'a>>,
}

impl fmt::Display for Separators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}{}{}",
            self.field, self.component, self.repetition, self.escape, self.subcomponent
        )
    }
}

/// Parse a message's text. Segments are separated by `\r` (a `\n` after it, or alone, is
/// tolerated: some senders use it); empty segments are skipped.
pub fn parse(text: &str) -> Result<Message<'_>, ParseError> {
    let text = text.trim_start_matches(['\r', '\n']);
    if !text.starts_with("MSH") {
        return Err(ParseError::NoMsh);
    }
    let mut chars = text[3..].chars();
    let field = chars.next().ok_or(ParseError::BadSeparators)?;
    let enc: Vec<char> = chars.take_while(|c| *c != field).collect();
    if enc.len() < 4 {
        return Err(ParseError::BadSeparators);
    }
    let separators = Separators {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
    };
    let all = [field, enc[0], enc[1], enc[2], enc[3]];
    for (i, a) in all.iter().enumerate() {
        if a.is_alphanumeric() || *a == '\r' || *a == '\n' || all[i + 1..].contains(a) {
            return Err(ParseError::BadSeparators);
        }
    }
    let mut segments = Vec::new();
    for (i, line) in text
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let name = line.get(..3).ok_or(ParseError::BadSegmentName(i + 1))?;
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            || line[3..].chars().next().is_some_and(|c| c != field)
        {
            return Err(ParseError::BadSegmentName(i + 1));
        }
        let mut fields: Vec<&str> = line.split(field).collect();
        if name == "MSH" {
            // MSH-1 is the separator itself: number the rest as the standard does.
            let sep_len = field.len_utf8();
            fields.insert(1, line.get(3..3 + sep_len).unwrap_or_default());
        }
        segments.push(Segment { name, fields });
    }
    Ok(Message {
        separators,
        segments,
    })
}

impl<'a> Message<'a> {
    /// The first segment with this name.
    pub fn segment(&self, name: &str) -> Option<&Segment<'a>> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Field `n` of the first `seg`, as written (escaped); `None` when absent or empty.
    pub fn field(&self, seg: &str, n: usize) -> Option<&'a str> {
        self.segment(seg)
            .and_then(|s| s.fields.get(n).copied())
            .filter(|f| !f.is_empty())
    }

    /// The repetitions of a field.
    pub fn repetitions(&self, seg: &str, n: usize) -> Vec<&'a str> {
        match self.field(seg, n) {
            // MSH-2 holds the repetition character itself: never split it.
            Some(f) if !(seg == "MSH" && n <= 2) => f.split(self.separators.repetition).collect(),
            Some(f) => vec![f],
            None => Vec::new(),
        }
    }

    /// Component `c` (1-based) of a field value, unescaped; `None` when absent or empty.
    pub fn component(&self, value: &str, c: usize) -> Option<String> {
        let raw = value
            .split(self.separators.component)
            .nth(c.checked_sub(1)?)?;
        let first_sub = raw
            .split(self.separators.subcomponent)
            .next()
            .unwrap_or(raw);
        let v = self.separators.unescape(first_sub);
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// Component `c` of field `n` of the first `seg` (first repetition), unescaped.
    pub fn get(&self, seg: &str, n: usize, c: usize) -> Option<String> {
        let f = self.field(seg, n)?;
        let first = if seg == "MSH" && n <= 2 {
            f
        } else {
            f.split(self.separators.repetition).next().unwrap_or(f)
        };
        self.component(first, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // HL7 v2.5.1 chapter 3 (Patient Administration), section 3.5.1, the A01 example message
    // ("Admit/visit notification"), with the PID-3 identifier given an NHS number as a UK
    // sender would (INTERFACE standards: NHS number in PID-3 with assigning authority NHS and
    // identifier type NH).
    const SPEC_A01: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5.1\r\
EVN|A01|200708181123||\r\
PID|1||9434765919^^^NHS^NH~PATID1234^5^M11^ADT1^MR^GOOD HEALTH HOSPITAL||EVERYMAN^ADAM^A^III||19610615|M||C|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC|\r\
NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE||||NK^NEXT OF KIN\r\
PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r";

    #[test]
    fn the_spec_example_reads_as_the_standard_numbers_it() {
        let m = parse(SPEC_A01).expect("parses");
        assert_eq!(m.separators, Separators::default());
        assert_eq!(m.field("MSH", 1), Some("|"));
        assert_eq!(m.field("MSH", 2), Some("^~\\&"));
        assert_eq!(m.get("MSH", 4, 1).as_deref(), Some("GOOD HEALTH HOSPITAL"));
        assert_eq!(m.get("MSH", 9, 1).as_deref(), Some("ADT"));
        assert_eq!(m.get("MSH", 9, 2).as_deref(), Some("A01"));
        assert_eq!(m.get("MSH", 10, 1).as_deref(), Some("MSG00001"));
        assert_eq!(m.get("MSH", 12, 1).as_deref(), Some("2.5.1"));
        let ids = m.repetitions("PID", 3);
        assert_eq!(ids.len(), 2);
        assert_eq!(m.component(ids[0], 5).as_deref(), Some("NH"));
        assert_eq!(m.get("PV1", 3, 1).as_deref(), Some("2000"));
        assert_eq!(m.get("PV1", 10, 1).as_deref(), Some("SUR"));
        assert_eq!(m.get("PV1", 44, 1), None);
    }

    #[test]
    fn separators_come_from_msh_and_escapes_are_undone() {
        let m = parse("MSH#:*!@#A#B\rPID#1##x!F!y:z*w").expect("parses");
        assert_eq!(m.separators.field, '#');
        assert_eq!(m.separators.component, ':');
        assert_eq!(m.get("PID", 3, 1).as_deref(), Some("x#y"));
        assert_eq!(m.get("PID", 3, 2).as_deref(), Some("z"));
        let d = Separators::default();
        assert_eq!(d.unescape(&d.escape("a|b^c~d\\e&f")), "a|b^c~d\\e&f");
        assert_eq!(d.unescape("\\H\\bold\\N\\"), "bold");
        assert_eq!(d.unescape("open\\F"), "open\\F");
    }

    #[test]
    fn what_is_not_a_message_is_said() {
        assert_eq!(parse("PID|1"), Err(ParseError::NoMsh));
        assert_eq!(parse("MSH|^~"), Err(ParseError::BadSeparators));
        assert_eq!(parse("MSH|^^\\&|"), Err(ParseError::BadSeparators));
        assert_eq!(
            parse("MSH|^~\\&|A\rpid|1"),
            Err(ParseError::BadSegmentName(2))
        );
        assert_eq!(parse("MSH|^~\\&|A\rPI"), Err(ParseError::BadSegmentName(2)));
    }
}
