//! CAP 1.2 (OASIS Common Alerting Protocol) rendering of a case, for
//! dispute and emergency systems that take CAP. Text is escaped by the
//! XML writer (quick-xml); times are `YYYY-MM-DDThh:mm:ss+00:00` as CAP
//! requires (no `Z`).

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use tiancha_protocol::{Case, CaseStatus, Category, Priority};

pub const CAP_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Unix ms → CAP date-time in UTC.
pub fn cap_time(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn cap_category(c: Category) -> &'static str {
    match c {
        Category::Gathering | Category::Intrusion => "Security",
        Category::Fire | Category::Smoke => "Fire",
        Category::Flood => "Met",
        Category::TrafficAccident => "Transport",
        Category::IllegalDumping => "Env",
        Category::IllegalConstruction | Category::RoadDamage => "Infra",
        Category::OtherHazard => "Other",
    }
}

fn severity(p: Priority) -> (&'static str, &'static str) {
    // (urgency, severity)
    match p {
        Priority::Urgent => ("Immediate", "Severe"),
        Priority::High => ("Expected", "Moderate"),
        Priority::Normal => ("Future", "Minor"),
        Priority::Low => ("Future", "Minor"),
    }
}

type W = Writer<Vec<u8>>;

fn el(w: &mut W, name: &str, text: &str) {
    w.write_event(Event::Start(BytesStart::new(name)))
        .expect("in memory");
    w.write_event(Event::Text(BytesText::new(text)))
        .expect("in memory");
    w.write_event(Event::End(BytesEnd::new(name)))
        .expect("in memory");
}

fn open(w: &mut W, name: &str) {
    w.write_event(Event::Start(BytesStart::new(name)))
        .expect("in memory");
}

fn close(w: &mut W, name: &str) {
    w.write_event(Event::End(BytesEnd::new(name)))
        .expect("in memory");
}

fn param(w: &mut W, name: &str, value: &str) {
    open(w, "parameter");
    el(w, "valueName", name);
    el(w, "value", value);
    close(w, "parameter");
}

/// Render `case` as a CAP 1.2 `<alert>`. `sender` identifies this
/// station (e.g. `tiancha@gs-1`), `sent_unix_ms` is the message time.
pub fn render(case: &Case, sender: &str, sent_unix_ms: i64) -> String {
    render_revision(case, sender, sent_unix_ms, 0)
}

/// [`render`] for revision `revision` of a case (0: as first sent). A
/// later revision (new evidence) is its own CAP message: identifier
/// `tiancha-case-{id}.rev{n}`, `msgType` Update, `references` naming the
/// first message.
pub fn render_revision(case: &Case, sender: &str, sent_unix_ms: i64, revision: i64) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .expect("in memory");
    let mut root = BytesStart::new("alert");
    root.push_attribute(("xmlns", CAP_NS));
    w.write_event(Event::Start(root)).expect("in memory");
    let identifier = match revision {
        0 => format!("tiancha-case-{}", case.case_id),
        n => format!("tiancha-case-{}.rev{n}", case.case_id),
    };
    el(&mut w, "identifier", &identifier);
    el(&mut w, "sender", sender);
    el(&mut w, "sent", &cap_time(sent_unix_ms));
    el(&mut w, "status", "Actual");
    let msg_type = match case.status {
        CaseStatus::Closed | CaseStatus::Resolved | CaseStatus::Rejected => "Cancel",
        _ if revision > 0 => "Update",
        _ => "Alert",
    };
    el(&mut w, "msgType", msg_type);
    el(&mut w, "source", &case.source);
    el(&mut w, "scope", "Restricted");
    el(
        &mut w,
        "restriction",
        "Dispute-resolution and police use only",
    );
    if msg_type != "Alert" {
        el(
            &mut w,
            "references",
            &format!(
                "{sender},tiancha-case-{},{}",
                case.case_id,
                cap_time(case.t_start_unix_ms)
            ),
        );
    }
    open(&mut w, "info");
    el(&mut w, "language", "en");
    el(&mut w, "category", cap_category(case.category));
    el(&mut w, "event", case.category.as_str());
    let (urgency, sev) = severity(case.priority);
    el(&mut w, "urgency", urgency);
    el(&mut w, "severity", sev);
    el(
        &mut w,
        "certainty",
        if case.confirmed_by.is_some() {
            "Observed"
        } else {
            "Likely"
        },
    );
    el(&mut w, "effective", &cap_time(case.t_start_unix_ms));
    el(&mut w, "senderName", "tiancha drone patrol");
    el(&mut w, "headline", &case.title);
    if !case.description.is_empty() {
        el(&mut w, "description", &case.description);
    }
    param(&mut w, "tiancha:case_id", &case.case_id.to_string());
    param(
        &mut w,
        "tiancha:priority",
        &format!("{:?}", case.priority).to_lowercase(),
    );
    param(&mut w, "tiancha:route", &case.route);
    param(&mut w, "tiancha:status", case.status.as_str());
    if let Some(by) = &case.confirmed_by {
        param(&mut w, "tiancha:confirmed_by", by);
    }
    for a in &case.alert_ids {
        param(&mut w, "tiancha:alert_id", &a.to_string());
    }
    if let Some(g) = &case.grid {
        param(&mut w, "tiancha:grid_id", &g.grid_id);
        param(&mut w, "tiancha:county", &g.county);
        param(&mut w, "tiancha:township", &g.township);
        param(&mut w, "tiancha:village", &g.village);
    }
    for e in &case.evidence {
        open(&mut w, "resource");
        el(&mut w, "resourceDesc", &e.kind);
        el(&mut w, "mimeType", &e.mime);
        if e.url.starts_with("data:") {
            // CAP carries inline content as derefUri (base64).
            if let Some((_, b64)) = e.url.split_once(";base64,") {
                el(&mut w, "derefUri", b64);
            }
        } else {
            el(&mut w, "uri", &e.url);
        }
        close(&mut w, "resource");
    }
    open(&mut w, "area");
    let desc = case
        .grid
        .as_ref()
        .map(|g| {
            [&g.county, &g.township, &g.village, &g.grid_id]
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:.6}, {:.6}", case.location.lat_deg, case.location.lon_deg));
    el(&mut w, "areaDesc", &desc);
    // WGS84 "lat,lon radius-km": 100 m around the case.
    el(
        &mut w,
        "circle",
        &format!(
            "{:.6},{:.6} 0.1",
            case.location.lat_deg, case.location.lon_deg
        ),
    );
    close(&mut w, "area");
    close(&mut w, "info");
    close(&mut w, "alert");
    String::from_utf8(w.into_inner()).expect("UTF-8 in, UTF-8 out")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_protocol::*;
    use uuid::Uuid;

    #[test]
    fn times_are_cap_shaped() {
        assert_eq!(cap_time(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(cap_time(951_782_400_000), "2000-02-29T00:00:00+00:00");
        assert_eq!(cap_time(1_800_000_000_123), "2027-01-15T08:00:00+00:00");
    }

    #[test]
    fn renders_parseable_escaped_cap() {
        let case = Case {
            schema: SCHEMA_VERSION,
            case_id: Uuid::now_v7(),
            source: "drone".into(),
            category: Category::Gathering,
            priority: Priority::High,
            location: GeoPoint::new(28.451, 117.942),
            grid: Some(GridCell {
                grid_id: "SR-017".into(),
                county: "Xinzhou".into(),
                township: "Shaxi".into(),
                village: "Xiajia <&> \"村\"".into(),
            }),
            t_start_unix_ms: 1_800_000_000_000,
            t_end_unix_ms: 1_800_000_060_000,
            title: "Gathering </headline><script>alert(1)</script>".into(),
            description: "a & b".into(),
            evidence: vec![Evidence {
                kind: "snapshot".into(),
                url: "https://gs/e/1.jpg?sig=a&exp=2".into(),
                mime: "image/jpeg".into(),
                sha256: "00".into(),
                alert_id: None,
            }],
            alert_ids: vec![Uuid::now_v7()],
            confirmed_by: Some("op1".into()),
            route: "governance".into(),
            status: CaseStatus::Confirmed,
        };
        let xml = render(&case, "tiancha@gs-1", 1_800_000_100_000);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some(CAP_NS));
        assert_eq!(root.tag_name().name(), "alert");
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(text("headline"), case.title);
        assert_eq!(text("msgType"), "Alert");
        assert_eq!(text("severity"), "Moderate");
        assert_eq!(text("uri"), "https://gs/e/1.jpg?sig=a&exp=2");
        assert!(text("areaDesc").contains("Xiajia <&> \"村\""));
        assert_eq!(text("circle"), "28.451000,117.942000 0.1");
        assert!(!xml.contains("<script>"), "escaped");
        // Element order of the CAP 1.2 schema for the first children.
        let kids: Vec<_> = root
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name().to_string())
            .collect();
        assert_eq!(
            &kids[..8],
            [
                "identifier",
                "sender",
                "sent",
                "status",
                "msgType",
                "source",
                "scope",
                "restriction"
            ]
        );
        assert!(
            !xml.contains("<references>"),
            "a first message refers to none"
        );

        // Revision 1 (a clip added): an Update of the first message.
        let xml = render_revision(&case, "tiancha@gs-1", 1_800_000_200_000, 1);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(text("msgType"), "Update");
        assert_eq!(
            text("identifier"),
            format!("tiancha-case-{}.rev1", case.case_id)
        );
        assert_eq!(
            text("references"),
            format!(
                "tiancha@gs-1,tiancha-case-{},{}",
                case.case_id,
                cap_time(case.t_start_unix_ms)
            )
        );
    }
}
