//! Governance records (permissions to view, care relationships, objections, emergency accesses
//! and care events), the same on both backends: how a change is written and how a patient's
//! records are read back.
//!
//! A patient's records are read as one statement, the rows of every table under one set of
//! columns and tagged by table, so a read is one round trip and one snapshot; a record view
//! reads the index's rows of the patient in the same statement ([`view_inputs_sql`]). Each
//! backend runs these statements and writes changes in its own transactions
//! (`sqlite/governance.rs`, `postgres/governance.rs`); what is read and written is here.

use crate::care_event::{care_event_from_row, push_events};
use crate::common::{ts, Cells, Dialect, JsonRow, Statement, Value};
use crate::index::{link_from_row, patient_from_row, PATIENT_COLUMN_NAMES};
use crate::{
    EmergencyRow, GovernanceChange, GovernanceRecords, ObjectionRow, PermissionRow,
    RelationshipRow, Result, SourceLink, StoreError, ViewInputs,
};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use std::sync::LazyLock;

/// One table's part of a [`union_sql`] statement.
struct UnionTable {
    name: &'static str,
    /// The `t` its rows are tagged with.
    tag: i32,
    columns: &'static [&'static str],
    /// Rows of this table in this column's order, then by `id`; `None`: no order (the reader
    /// sorts them) and no `id`.
    order: Option<&'static str>,
}

const GOVERNANCE_TABLES: [UnionTable; 5] = [
    UnionTable {
        name: "permission",
        tag: 1,
        columns: &[
            "nhs_number",
            "org_code",
            "user_id",
            "decision",
            "given_by",
            "at",
            "reason_code",
            "reason_text",
        ],
        order: Some("at"),
    },
    UnionTable {
        name: "relationship",
        tag: 2,
        columns: &[
            "nhs_number",
            "org_code",
            "kind",
            "user_id",
            "reason",
            "start",
            "end",
            "recorded_by",
        ],
        order: Some("start"),
    },
    UnionTable {
        name: "objection",
        tag: 3,
        columns: &[
            "nhs_number",
            "state",
            "recorded_by",
            "on_whose_word",
            "override_reason",
            "by_role",
            "note",
            "at",
            "ends_at",
        ],
        order: Some("at"),
    },
    UnionTable {
        name: "emergency_access",
        tag: 4,
        columns: &[
            "nhs_number",
            "user_id",
            "org_code",
            "reason_code",
            "reason_text",
            "started_at",
        ],
        order: Some("started_at"),
    },
    UnionTable {
        name: "care_event",
        tag: 7,
        columns: &[
            "nhs_number",
            "org_code",
            "kind",
            "ward",
            "team",
            "service",
            "start",
            "end",
            "origin",
            "source_event_id",
            "received_at",
        ],
        order: Some("start"),
    },
];

/// The index's rows of a patient: tag 5 the patient, tag 6 their source links (sorted by the
/// reader: source, then local id).
const INDEX_TABLES: [UnionTable; 2] = [
    UnionTable {
        name: "patient",
        tag: 5,
        columns: &PATIENT_COLUMN_NAMES,
        order: None,
    },
    UnionTable {
        name: "source_link",
        tag: 6,
        columns: &[
            "nhs_number",
            "source",
            "local_id",
            "method",
            "family",
            "given",
            "birth_date",
            "postcode",
            "linked_at",
        ],
        order: None,
    },
];

/// What PDS (or a source's label) says of the patient, tag 8: only whether they are restricted.
/// First in a view's statement: PostgreSQL takes the `boolean` column's type from it.
const STATUS_TABLE: UnionTable = UnionTable {
    name: "patient_status",
    tag: 8,
    columns: &["nhs_number", "restricted"],
    order: None,
};

/// Rows of several tables for one patient, as one statement (one round trip, one snapshot):
/// every table's rows under the union of their column names (`NULL` where a table has no such
/// column), tagged by `t`, in each table's own order. `param` is the backend's first
/// placeholder.
fn union_sql(tables: &[&UnionTable], param: &str) -> String {
    let mut all: Vec<&str> = Vec::new();
    for table in tables {
        for c in table.columns {
            if !all.contains(c) {
                all.push(c);
            }
        }
    }
    let selects: Vec<String> = tables
        .iter()
        .map(|table| {
            let list: Vec<String> = all
                .iter()
                .map(|c| {
                    let value = if table.columns.contains(c) {
                        format!("\"{c}\"")
                    } else {
                        "NULL".into()
                    };
                    format!("{value} AS \"{c}\"")
                })
                .collect();
            let (order, id) = match table.order {
                Some(o) => (format!("\"{o}\""), "id"),
                None => ("NULL".to_owned(), "0"),
            };
            format!(
                "SELECT {} AS t, {}, {order} AS o, {id} AS id FROM {} WHERE nhs_number = {param}",
                table.tag,
                list.join(", "),
                table.name
            )
        })
        .collect();
    format!("{} ORDER BY t, o, id", selects.join(" UNION ALL "))
}

/// The five governance lists of one patient, as one statement, so one round trip and one
/// snapshot: rows tagged 1 permission, 2 relationship, 3 objection, 4 emergency access,
/// 7 care event.
fn governance_sql(param: &str) -> String {
    union_sql(&GOVERNANCE_TABLES.iter().collect::<Vec<_>>(), param)
}

/// The tables a record view reads, in the order of [`view_inputs_sql`]'s answer: whether the
/// patient is restricted, the patient, their source links, then the five governance lists.
/// Pairs in the matching queue that name the patient (the reader sorts them by source, then
/// local id): read with the decision's inputs, said only in a view the decision permits.
const CANDIDATE_TABLE: UnionTable = UnionTable {
    name: "match_candidate",
    tag: 9,
    columns: crate::match_review::CANDIDATE_FIELDS,
    order: None,
};

fn view_tables() -> [&'static UnionTable; 9] {
    let [permission, relationship, objection, emergency, care_event] = &GOVERNANCE_TABLES;
    let [patient, link] = &INDEX_TABLES;
    [
        &STATUS_TABLE,
        patient,
        link,
        permission,
        relationship,
        objection,
        emergency,
        care_event,
        &CANDIDATE_TABLE,
    ]
}

/// What a record view reads before deciding, as one statement answering one value: a JSON
/// array holding, for each of [`view_tables`], an array of its rows of the patient, each row
/// an array of the table's columns in order (each list in its table's order). One value
/// rather than a row per record: the driver hands a row across from the database one at a
/// time, and at a view's rate that handing over, not the SQL, was most of the read's time.
pub(crate) fn view_inputs_sql(dialect: Dialect) -> String {
    let parts: Vec<String> = view_tables()
        .iter()
        .map(|table| {
            let columns: Vec<String> = table.columns.iter().map(|c| format!("\"{c}\"")).collect();
            let columns = columns.join(", ");
            let order = table
                .order
                .map(|o| format!(" ORDER BY \"{o}\", id"))
                .unwrap_or_default();
            let name = table.name;
            match dialect {
                Dialect::Sqlite => format!(
                    "json((SELECT json_group_array(json_array({columns}){order}) \
                     FROM {name} WHERE nhs_number = ?1))"
                ),
                Dialect::Postgres => format!(
                    "(SELECT coalesce(json_agg(json_build_array({columns}){order}), '[]'::json) \
                     FROM {name} WHERE nhs_number = $1)"
                ),
            }
        })
        .collect();
    match dialect {
        Dialect::Sqlite => format!("SELECT json_array({})", parts.join(", ")),
        Dialect::Postgres => format!("SELECT json_build_array({})::text", parts.join(", ")),
    }
}

/// Appends to `qb` (empty) the statement that writes `change`: an `INSERT`, or for a care event
/// an insert-or-replace by its source key. The caller runs it inside the transaction that
/// appends the change's audit record.
pub(crate) fn push_change<DB: Database>(qb: &mut QueryBuilder<'_, DB>, change: &GovernanceChange)
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
{
    match change {
        GovernanceChange::Permission(p) => {
            qb.push(
                "INSERT INTO permission (nhs_number, org_code, user_id, decision, given_by, at, \
                 reason_code, reason_text) ",
            );
            qb.push_values([p], |mut b, p| {
                b.push(crate::patient_merge::SURVIVOR_OF)
                    .push_bind_unseparated(p.nhs_number.as_str().to_owned())
                    .push_unseparated("), ")
                    .push_bind_unseparated(p.nhs_number.as_str().to_owned())
                    .push_unseparated(")")
                    .push_bind(p.org_code.clone())
                    .push_bind(p.user_id.clone())
                    .push_bind(p.decision.clone())
                    .push_bind(p.given_by.clone())
                    .push_bind(ts(&p.at))
                    .push_bind(p.reason_code.clone())
                    .push_bind(p.reason_text.clone());
            });
        }
        GovernanceChange::Relationship(r) => {
            qb.push(
                "INSERT INTO relationship (nhs_number, org_code, kind, user_id, reason, \
                 \"start\", \"end\", recorded_by) ",
            );
            qb.push_values([r], |mut b, r| {
                b.push(crate::patient_merge::SURVIVOR_OF)
                    .push_bind_unseparated(r.nhs_number.as_str().to_owned())
                    .push_unseparated("), ")
                    .push_bind_unseparated(r.nhs_number.as_str().to_owned())
                    .push_unseparated(")")
                    .push_bind(r.org_code.clone())
                    .push_bind(r.kind.clone())
                    .push_bind(r.user_id.clone())
                    .push_bind(r.reason.clone())
                    .push_bind(ts(&r.start))
                    .push_bind(r.end.as_ref().map(ts))
                    .push_bind(r.recorded_by.clone());
            });
        }
        GovernanceChange::Objection(o) => {
            qb.push(
                "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                 override_reason, by_role, note, at, ends_at) ",
            );
            qb.push_values([o], |mut b, o| {
                b.push(crate::patient_merge::SURVIVOR_OF)
                    .push_bind_unseparated(o.nhs_number.as_str().to_owned())
                    .push_unseparated("), ")
                    .push_bind_unseparated(o.nhs_number.as_str().to_owned())
                    .push_unseparated(")")
                    .push_bind(o.state.clone())
                    .push_bind(o.recorded_by.clone())
                    .push_bind(o.on_whose_word.clone())
                    .push_bind(o.override_reason.clone())
                    .push_bind(o.by_role.clone())
                    .push_bind(o.note.clone())
                    .push_bind(ts(&o.at))
                    .push_bind(o.ends_at.as_ref().map(ts));
            });
        }
        GovernanceChange::Emergency(e) => {
            qb.push(
                "INSERT INTO emergency_access (nhs_number, user_id, org_code, reason_code, \
                 reason_text, started_at) ",
            );
            qb.push_values([e], |mut b, e| {
                b.push(crate::patient_merge::SURVIVOR_OF)
                    .push_bind_unseparated(e.nhs_number.as_str().to_owned())
                    .push_unseparated("), ")
                    .push_bind_unseparated(e.nhs_number.as_str().to_owned())
                    .push_unseparated(")")
                    .push_bind(e.user_id.clone())
                    .push_bind(e.org_code.clone())
                    .push_bind(e.reason_code.clone())
                    .push_bind(e.reason_text.clone())
                    .push_bind(ts(&e.started_at));
            });
        }
        GovernanceChange::CareEvent(e) => push_events(qb, &[e]),
    }
}

/// A row of [`governance_sql`]'s answer, on either backend: its values, and the tag `t`
/// naming its table.
pub(crate) trait Tagged: Cells {
    fn tag(&self, statement: &str) -> Result<i32>;
}

impl<R> Tagged for R
where
    R: Row + Cells,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    fn tag(&self, statement: &str) -> Result<i32> {
        self.try_get("t")
            .map_err(|_| StoreError::Corrupt(format!("column {statement}.t cannot be read")))
    }
}

fn permission_from_row(row: &impl Cells) -> Result<PermissionRow> {
    const T: &str = "permission";
    Ok(PermissionRow {
        nhs_number: row.nhs(T)?,
        org_code: row.text(T, "org_code")?,
        user_id: row.text(T, "user_id")?,
        decision: row.text(T, "decision")?,
        given_by: row.text(T, "given_by")?,
        at: row.at(T, "at")?,
        reason_code: row.text_opt(T, "reason_code")?,
        reason_text: row.text_opt(T, "reason_text")?,
    })
}

fn relationship_from_row(row: &impl Cells) -> Result<RelationshipRow> {
    const T: &str = "relationship";
    Ok(RelationshipRow {
        nhs_number: row.nhs(T)?,
        org_code: row.text(T, "org_code")?,
        kind: row.text(T, "kind")?,
        user_id: row.text_opt(T, "user_id")?,
        reason: row.text_opt(T, "reason")?,
        start: row.at(T, "start")?,
        end: row.at_opt(T, "end")?,
        recorded_by: row.text(T, "recorded_by")?,
    })
}

fn objection_from_row(row: &impl Cells) -> Result<ObjectionRow> {
    const T: &str = "objection";
    Ok(ObjectionRow {
        nhs_number: row.nhs(T)?,
        state: row.text(T, "state")?,
        recorded_by: row.text(T, "recorded_by")?,
        on_whose_word: row.text(T, "on_whose_word")?,
        override_reason: row.text_opt(T, "override_reason")?,
        by_role: row.text_opt(T, "by_role")?,
        note: row.text_opt(T, "note")?,
        at: row.at(T, "at")?,
        ends_at: row.at_opt(T, "ends_at")?,
    })
}

fn emergency_from_row(row: &impl Cells) -> Result<EmergencyRow> {
    const T: &str = "emergency_access";
    Ok(EmergencyRow {
        nhs_number: row.nhs(T)?,
        user_id: row.text(T, "user_id")?,
        org_code: row.text(T, "org_code")?,
        reason_code: row.text(T, "reason_code")?,
        reason_text: row.text(T, "reason_text")?,
        started_at: row.at(T, "started_at")?,
    })
}

/// Sorts [`governance_sql`]'s rows into the five lists by their tag `t`; `statement` names the
/// statement in the error when a tag cannot be read.
fn governance_from_rows<'r, R: Tagged + 'r>(
    rows: impl IntoIterator<Item = &'r R>,
    statement: &str,
) -> Result<GovernanceRecords> {
    let mut records = GovernanceRecords::default();
    for row in rows {
        match row.tag(statement)? {
            1 => records.permissions.push(permission_from_row(row)?),
            2 => records.relationships.push(relationship_from_row(row)?),
            3 => records.objections.push(objection_from_row(row)?),
            4 => records.emergencies.push(emergency_from_row(row)?),
            7 => records.care_events.push(care_event_from_row(row)?),
            _ => {
                return Err(StoreError::Corrupt(
                    "governance row of no known table".into(),
                ))
            }
        }
    }
    Ok(records)
}

/// [`governance_sql`]'s answer, read.
pub(crate) fn governance_from(rows: &[impl Tagged]) -> Result<GovernanceRecords> {
    governance_from_rows(rows, "governance")
}

/// [`view_inputs_sql`]'s answer, read: the patient, their links (by source, then local id, in
/// byte order as both stores sort them), the governance lists, and whether they are restricted.
pub(crate) fn view_inputs_from(answer: &str) -> Result<ViewInputs> {
    let corrupt = || StoreError::Corrupt("the view's read is not the JSON it should be".into());
    let lists: Vec<Vec<Vec<serde_json::Value>>> =
        serde_json::from_str(answer).map_err(|_| corrupt())?;
    let tables = view_tables();
    if lists.len() != tables.len() {
        return Err(corrupt());
    }
    let rows = |i: usize| {
        lists[i].iter().map(move |values| JsonRow {
            columns: tables[i].columns,
            values,
        })
    };
    let mut restricted = false;
    for row in rows(0) {
        restricted = row.flag("patient_status", "restricted")?;
    }
    let mut patients = rows(1);
    let patient = patients
        .next()
        .map(|row| patient_from_row(&row))
        .transpose()?;
    if patients.next().is_some() {
        return Err(StoreError::Corrupt(
            "two patients with one NHS number".into(),
        ));
    }
    let mut links = rows(2)
        .map(|row| link_from_row(&row))
        .collect::<Result<Vec<SourceLink>>>()?;
    links.sort_by(|a, b| {
        (a.source.as_str(), a.local_id.as_str()).cmp(&(b.source.as_str(), b.local_id.as_str()))
    });
    let governance = GovernanceRecords {
        permissions: rows(3)
            .map(|r| permission_from_row(&r))
            .collect::<Result<_>>()?,
        relationships: rows(4)
            .map(|r| relationship_from_row(&r))
            .collect::<Result<_>>()?,
        objections: rows(5)
            .map(|r| objection_from_row(&r))
            .collect::<Result<_>>()?,
        emergencies: rows(6)
            .map(|r| emergency_from_row(&r))
            .collect::<Result<_>>()?,
        care_events: rows(7)
            .map(|r| care_event_from_row(&r))
            .collect::<Result<_>>()?,
    };
    let mut match_candidates = rows(8)
        .map(|r| crate::match_review::candidate_from_row(&r))
        .collect::<Result<Vec<_>>>()?;
    match_candidates.sort_by(|a, b| {
        (a.source.as_str(), a.local_id.as_str()).cmp(&(b.source.as_str(), b.local_id.as_str()))
    });
    Ok(ViewInputs {
        patient,
        links,
        governance,
        restricted,
        match_candidates,
    })
}

/// One patient's governance records ([`governance_sql`]), read with [`governance_from`].
pub(crate) fn governance(nhs: &mcr_domain::NhsNumber) -> Statement<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| governance_sql("$1"));
    Statement::new(SQL.as_str(), vec![Value::Text(nhs.as_str())])
}
