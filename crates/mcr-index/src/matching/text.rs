//! The string measures the comparisons use (Soundex, Jaro–Winkler, one edit apart) and the
//! name lists (the given names people hold, nicknames and short forms).

/// American Soundex of upper-case ASCII letters: the first letter and three digits.
pub fn soundex(s: &str) -> [u8; 4] {
    fn digit(c: u8) -> u8 {
        match c {
            b'B' | b'F' | b'P' | b'V' => b'1',
            b'C' | b'G' | b'J' | b'K' | b'Q' | b'S' | b'X' | b'Z' => b'2',
            b'D' | b'T' => b'3',
            b'L' => b'4',
            b'M' | b'N' => b'5',
            b'R' => b'6',
            b'H' | b'W' => b'-',
            _ => b'0',
        }
    }
    let mut out = [b'0'; 4];
    let mut bytes = s.bytes().filter(u8::is_ascii_uppercase);
    let Some(first) = bytes.next() else {
        return out;
    };
    out[0] = first;
    let mut last = digit(first);
    let mut n = 1;
    for c in bytes {
        let d = digit(c);
        if d == b'-' {
            continue;
        }
        if d != b'0' && d != last {
            out[n] = d;
            n += 1;
            if n == 4 {
                break;
            }
        }
        last = d;
    }
    out
}

/// Jaro–Winkler similarity of two short strings (bytes; names are normalised to ASCII-ish
/// upper case first; the first 64 bytes of each are compared).
///
/// Where every byte of `b` is between space and `_` (upper-case names, digits, addresses),
/// each character's places in `b` are kept as bits, and each of `a`'s characters finds its
/// first unmatched place in the window in one step: the matching pass compares millions of
/// pairs. Otherwise [`jaro_winkler_by_scan`] does the same by scanning.
pub fn jaro_winkler(a_text: &str, b_text: &str) -> f64 {
    let (a, b) = (a_text.as_bytes(), b_text.as_bytes());
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let (a, b) = (&a[..a.len().min(64)], &b[..b.len().min(64)]);
    let slot = |c: u8| (32..96).contains(&c).then(|| usize::from(c - 32));
    let mut places = [0u64; 64];
    for (j, &c) in b.iter().enumerate() {
        match slot(c) {
            Some(s) => places[s] |= 1 << j,
            None => return jaro_winkler_by_scan(a_text, b_text),
        }
    }
    let (mut a_hit, mut b_hit, mut matches) = (0u64, 0u64, 0usize);
    for (i, &ca) in a.iter().enumerate() {
        // A character `b` does not hold matches nothing.
        let Some(s) = slot(ca) else {
            continue;
        };
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        if lo >= hi {
            continue;
        }
        let below_hi = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
        let free = places[s] & !b_hit & below_hi & !((1u64 << lo) - 1);
        if free != 0 {
            b_hit |= 1 << free.trailing_zeros();
            a_hit |= 1 << i;
            matches += 1;
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let (mut am, mut bm) = (a_hit, b_hit);
    while am != 0 {
        let (i, j) = (am.trailing_zeros() as usize, bm.trailing_zeros() as usize);
        if a[i] != b[j] {
            transpositions += 1;
        }
        am &= am - 1;
        bm &= bm - 1;
    }
    winkler(a, b, matches, transpositions)
}

/// Jaro–Winkler by scanning each window ([`jaro_winkler`] for any bytes).
pub(super) fn jaro_winkler_by_scan(a: &str, b: &str) -> f64 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let (a, b) = (&a[..a.len().min(64)], &b[..b.len().min(64)]);
    let mut a_hit = [false; 64];
    let mut b_hit = [false; 64];
    let mut matches = 0usize;
    for (i, &ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_hit[j] && b[j] == ca {
                a_hit[i] = true;
                b_hit[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0usize;
    for (i, &ca) in a.iter().enumerate() {
        if !a_hit[i] {
            continue;
        }
        while !b_hit[j] {
            j += 1;
        }
        if ca != b[j] {
            transpositions += 1;
        }
        j += 1;
    }
    winkler(a, b, matches, transpositions)
}

/// Jaro from the matches and transpositions, then Winkler's bonus for a common prefix of up
/// to four.
fn winkler(a: &[u8], b: &[u8], matches: usize, transpositions: usize) -> f64 {
    let m = matches as f64;
    let jaro =
        (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64 / 2.0) / m) / 3.0;
    let prefix = a
        .iter()
        .zip(b.iter())
        .take(4)
        .take_while(|(x, y)| x == y)
        .count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

/// A typo apart: Jaro–Winkler at least 0.92, or one edit ([`damerau_one`]).
pub(super) fn typo(a: &str, b: &str) -> bool {
    jaro_winkler(a, b) >= 0.92 || damerau_one(a, b)
}

/// One insertion, deletion, substitution or adjacent transposition apart (names of four
/// letters or more: in shorter ones one letter is too much of the name).
pub(super) fn damerau_one(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().min(b.len()) < 4 || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    if ra.len() == rb.len() {
        ra[1..] == rb[1..]
            || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
    } else if ra.len() > rb.len() {
        ra[1..] == *rb
    } else {
        rb[1..] == *ra
    }
}

/// The given names people hold (`data/given-names.txt`: every name the US Social Security
/// Administration counted for at least 500 babies, 1880 to 2017), normalised as names are.
pub(super) mod given_names {
    use std::collections::HashSet;
    use std::sync::LazyLock;

    static NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
        include_str!("../../data/given-names.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(mcr_domain::demographics::normalise_name)
            .filter(|n| !n.is_empty())
            .collect()
    });

    pub(in crate::matching) fn get() -> &'static HashSet<String> {
        &NAMES
    }
}

/// Given names that are one name: nicknames, short forms and transliterations.
pub(super) mod nicknames {
    /// Each line one name's forms, normalised (upper case, letters only).
    const GROUPS: &[&[&str]] = &[
        &["ROBERT", "ROB", "ROBBIE", "BOB", "BOBBY", "BERT"],
        &["WILLIAM", "WILL", "BILL", "BILLY", "WILLIE", "LIAM"],
        &[
            "ELIZABETH",
            "LIZ",
            "LIZZIE",
            "BETH",
            "BETTY",
            "ELIZA",
            "LIBBY",
            "ELSIE",
        ],
        &["MARGARET", "MAGGIE", "MEG", "PEGGY", "MAISIE", "GRETA"],
        &[
            "KATHERINE",
            "CATHERINE",
            "KATHRYN",
            "KATE",
            "KATIE",
            "KATHY",
            "CATHY",
            "KAT",
        ],
        &["JAMES", "JIM", "JIMMY", "JAMIE"],
        &["JOHN", "JACK", "JOHNNY", "JON", "JONATHAN", "JONNY"],
        &["RICHARD", "RICK", "RICKY", "DICK", "RICH", "RICHIE"],
        &["MICHAEL", "MIKE", "MICK", "MICKY", "MIKEY"],
        &["THOMAS", "TOM", "TOMMY"],
        &["EDWARD", "ED", "EDDIE", "TED", "TEDDY", "NED"],
        &[
            "ALEXANDER",
            "ALEX",
            "ALEC",
            "SANDY",
            "XANDER",
            "ALEKSANDR",
            "ALEKSANDER",
        ],
        &["ALEXANDRA", "ALEX", "SANDRA", "LEXI", "ALEKSANDRA"],
        &["CHRISTOPHER", "CHRIS", "KIT"],
        &["CHRISTINE", "CHRISTINA", "CHRIS", "TINA", "KRISTINA"],
        &["DANIEL", "DAN", "DANNY"],
        &["DAVID", "DAVE", "DAVY"],
        &[
            "JOSEPH", "JOE", "JOEY", "YUSUF", "YOUSEF", "YOUSSEF", "JOSEF",
        ],
        &["SAMUEL", "SAM", "SAMMY"],
        &["SAMANTHA", "SAM", "SAMMY"],
        &["BENJAMIN", "BEN", "BENNY"],
        &["MATTHEW", "MATT", "MATTY"],
        &["ANTHONY", "TONY", "ANTONY"],
        &["ANDREW", "ANDY", "DREW"],
        &["NICHOLAS", "NICK", "NICKY", "NICO"],
        &["JENNIFER", "JEN", "JENNY"],
        &["REBECCA", "BECKY", "BECCA"],
        &["SUSAN", "SUE", "SUSIE", "SUZANNE"],
        &["PATRICIA", "PAT", "PATTY", "TRISH", "TRICIA"],
        &["PATRICK", "PAT", "PADDY"],
        &["DEBORAH", "DEBBIE", "DEBRA", "DEB"],
        &["VICTORIA", "VICKY", "VICKI", "TORI"],
        &["CHARLOTTE", "LOTTIE", "CHARLIE"],
        &["CHARLES", "CHARLIE", "CHAS", "CHUCK"],
        &["HENRY", "HARRY", "HAL", "HANK"],
        &["FREDERICK", "FRED", "FREDDIE", "FREDDY"],
        &["ALFRED", "ALF", "ALFIE", "FRED"],
        &["PETER", "PETE"],
        &["STEPHEN", "STEVEN", "STEVE", "STEVIE"],
        &["TIMOTHY", "TIM", "TIMMY"],
        &["NATHAN", "NATHANIEL", "NAT", "NATE"],
        &["ABIGAIL", "ABBIE", "ABBY", "ABI"],
        &["ELEANOR", "ELLIE", "NELL", "NELLIE", "ELEANORE"],
        &["HELEN", "NELL", "NELLIE"],
        &["ISABEL", "ISABELLA", "ISOBEL", "IZZY", "BELLA"],
        &["JACQUELINE", "JACKIE"],
        &["JOSEPHINE", "JO", "JOSIE"],
        &["JOANNE", "JOANNA", "JO"],
        &["KIMBERLEY", "KIMBERLY", "KIM"],
        &["MARY", "MOLLY", "POLLY", "MAIRE", "MAMIE"],
        &["SARAH", "SARA", "SALLY"],
        &["THEODORE", "THEO", "TED"],
        &["GERALD", "GERRY", "JERRY"],
        &["LEONARD", "LEN", "LENNY", "LEO"],
        &["LAWRENCE", "LAURENCE", "LARRY", "LAURIE"],
        &["RONALD", "RON", "RONNIE"],
        &["DONALD", "DON", "DONNIE"],
        &["KENNETH", "KEN", "KENNY"],
        &["RAYMOND", "RAY"],
        &["TERENCE", "TERRY"],
        &["PHILIP", "PHILLIP", "PHIL", "PIP"],
        &["GREGORY", "GREG"],
        &["DOUGLAS", "DOUG", "DOUGIE"],
        &["ALBERT", "BERT", "BERTIE", "AL"],
        &["FLORENCE", "FLO", "FLOSSIE"],
        &["DOROTHY", "DOT", "DOTTY", "DOLLY"],
        &["HARRIET", "HATTIE"],
        &["ANNE", "ANN", "ANNA", "ANNIE", "HANNAH", "NANCY"],
        &["EMILY", "EMMA", "EM", "EMMIE"],
        &["SOPHIE", "SOPHIA", "SOFIA"],
        &["OLIVIA", "LIVVY", "LIV"],
        &["AMELIA", "MILLIE", "AMY"],
        &[
            "MOHAMMED", "MUHAMMAD", "MOHAMMAD", "MOHAMED", "MOHAMAD", "MUHAMMED", "MO",
        ],
        &["AHMED", "AHMAD", "AHMET"],
        &["HUSSAIN", "HUSSEIN", "HUSAIN", "HOSSEIN"],
        &["IBRAHIM", "EBRAHIM", "ABRAHAM"],
        &["SULEIMAN", "SULEYMAN", "SOLOMON"],
        &["YAKUB", "YAQUB", "JACOB", "JAKE"],
        &["DMITRI", "DMITRY", "DIMITRI"],
        &["SERGEI", "SERGEY", "SERGIO"],
        &["OLEKSANDR", "OLEKSANDER", "SASHA"],
        &["SIOBHAN", "SHIVAUN", "CHEVONNE"],
        &["SEAN", "SHAUN", "SHAWN"],
        &["NIAMH", "NEVE", "NEVE"],
    ];

    /// The groups holding `name`, one bit each: two names are one name when their groups
    /// meet. Worked out once per record, so a comparison is one `&`, not a scan of the list
    /// (which was most of an index pass's string comparisons).
    pub(in crate::matching) fn groups_of(name: &str) -> u128 {
        GROUPS
            .iter()
            .enumerate()
            .filter(|(_, g)| g.contains(&name))
            .fold(0, |groups, (i, _)| groups | 1 << i)
    }

    const _: () = assert!(GROUPS.len() <= 128, "a name's groups are held in a u128");

    /// Whether `a` and `b` are forms of one name: some group holds both.
    #[cfg(test)]
    pub(in crate::matching) fn alike(a: &str, b: &str) -> bool {
        GROUPS.iter().any(|g| g.contains(&a) && g.contains(&b))
    }

    /// Every name in the list, for tests.
    #[cfg(test)]
    pub(in crate::matching) fn all() -> impl Iterator<Item = &'static str> {
        GROUPS.iter().flat_map(|g| g.iter().copied())
    }
}
