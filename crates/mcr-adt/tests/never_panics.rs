//! The parser, the ADT interpreter and the ACK builder never panic, whatever the input: random
//! bytes, and random messages built from HL7's own alphabet (separators, escapes, segment
//! names, digits), which reach much deeper than random bytes do.

use mcr_adt::parse::parse;
use mcr_adt::{ack, interpret, timestamp, Refusal};
use proptest::prelude::*;

fn hl7ish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "MSH",
        "|",
        "^",
        "~",
        "\\",
        "&",
        "\r",
        "\n",
        "PID",
        "PV1",
        "EVN",
        "MRG",
        "ADT",
        "A01",
        "A03",
        "A40",
        "2.5",
        "2.3",
        "NH",
        "NHS",
        "9434765919",
        "2026",
        "1130",
        "+0100",
        "\\F\\",
        "\\E",
        "#",
        "é",
        "\u{1c}",
        "\u{0b}",
        "",
        "0",
        "19",
        "45",
    ]);
    prop::collection::vec(pieces, 0..120).prop_map(|v| v.concat())
}

fn check(text: &str) {
    if let Ok(m) = parse(text) {
        for seg in ["MSH", "PID", "PV1", "MRG", "EVN"] {
            for n in 0..50 {
                let _ = m.field(seg, n);
                let _ = m.repetitions(seg, n);
                for c in 0..4 {
                    let _ = m.get(seg, n, c);
                }
            }
        }
    }
    let (env, read) = interpret(text);
    let refusal = read.err().unwrap_or_else(|| Refusal::ae(207, "x"));
    let now = chrono::DateTime::UNIX_EPOCH;
    let answer = ack(&env, "MCR", "MCR01", now, "A1", Some(&refusal));
    // Whatever came in, our answer is a message we can read back.
    assert!(parse(&answer).is_ok(), "{answer:?}");
    let _ = timestamp(text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_hl7ish_text(text in hl7ish()) {
        check(&text);
        check(&format!("MSH|^~\\&|{text}"));
    }
}
