//! A small, valid PDF made in code: one A4 page of Helvetica text, for the synthetic
//! documents sources hold as `Binary` resources.

/// A one-page PDF showing `title` and then each of `lines`.
pub fn letter(title: &str, lines: &[String]) -> Vec<u8> {
    let escape = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect()
    };
    let mut text = format!("BT /F1 16 Tf 56 780 Td ({}) Tj ET\n", escape(title));
    for (n, line) in lines.iter().enumerate() {
        let y = 748 - 18 * n as i64;
        text.push_str(&format!(
            "BT /F1 11 Tf 56 {y} Td ({}) Tj ET\n",
            escape(line)
        ));
    }
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{text}endstream", text.len()),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cross_reference_table_points_at_each_object() {
        let pdf = super::letter("Discharge (summary)", &["Seen on 3 May.".into()]);
        assert!(pdf.starts_with(b"%PDF-1.4"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        // Offsets are in bytes: find them in the bytes (the binary comment is not UTF-8).
        let find = |at: usize, what: &[u8]| pdf[at..].starts_with(what);
        let tail = String::from_utf8_lossy(&pdf[pdf.len() - 40..]).into_owned();
        let xref: usize = tail
            .split("startxref\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .and_then(|s| s.parse().ok())
            .expect("startxref");
        assert!(find(xref, b"xref\n0 6\n"));
        let table = String::from_utf8_lossy(&pdf[xref..]).into_owned();
        for (n, line) in table.lines().skip(3).take(5).enumerate() {
            let at: usize = line[..10].parse().expect("offset");
            assert!(find(at, format!("{} 0 obj", n + 1).as_bytes()), "{line}");
        }
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("(Discharge \\(summary\\)) Tj"));
    }
}
