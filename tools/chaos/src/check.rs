//! The invariants of DOMAIN.md, read from every service's database
//! (read-only queries): each database is its service's truth, so agreement
//! between them is what "no event lost, none applied twice" means.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, QueryResult, Statement};

/// What one check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Outbox rows written (every committed state change others must know of).
    pub events: u64,
    /// Outbox rows not (yet) confirmed by the broker.
    pub unsent: u64,
    /// Effects missing at a consumer (the source says it happened, the
    /// consumer never applied it).
    pub lost: Vec<String>,
    /// Where the unsent rows are (counted in `unsent`).
    pub unsent_by: Vec<String>,
    /// Effects applied twice (a step twice in the view's history, a device
    /// out with two rentals).
    pub twice: Vec<String>,
    /// Invariant violations (unpaid, not refunded, double outcome, overbooked).
    pub violations: Vec<String>,
    /// Reservations still `PENDING_PAYMENT` (a sweep is due).
    pub pending: u64,
    /// Cars let in by a gate deciding from its replica.
    pub replica_entries: u64,
}

impl Report {
    /// Everything settled: nothing unsent, nothing pending, nothing missing.
    pub fn settled(&self) -> bool {
        self.unsent == 0 && self.pending == 0 && self.lost.is_empty()
    }

    /// No violation, nothing lost, nothing applied twice.
    pub fn clean(&self) -> bool {
        self.violations.is_empty() && self.lost.is_empty() && self.twice.is_empty()
    }

    /// Lost effects, counting unsent outbox rows.
    pub fn lost_count(&self) -> usize {
        self.lost.len() + usize::try_from(self.unsent).unwrap_or(usize::MAX)
    }

    /// Every finding, worst first.
    pub fn findings(&self) -> impl Iterator<Item = &String> {
        self.violations
            .iter()
            .chain(&self.unsent_by)
            .chain(&self.lost)
            .chain(&self.twice)
    }
}

/// Where each service's database is.
#[derive(Debug, Clone)]
pub struct Sources {
    pub urls: BTreeMap<&'static str, String>,
}

async fn rows(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<QueryResult>> {
    Ok(db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?)
}

fn text(r: &QueryResult, col: &str) -> String {
    r.try_get::<Option<String>>("", col)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn int(r: &QueryResult, col: &str) -> i64 {
    r.try_get::<Option<i64>>("", col)
        .ok()
        .flatten()
        .unwrap_or(0)
}

const HOLDING: [&str; 5] = [
    "PENDING_PAYMENT",
    "RESERVED",
    "RENTAL_ACCEPTED",
    "IN_USE",
    "RETURNED",
];
const PAID: [&str; 5] = [
    "RESERVED",
    "RENTAL_ACCEPTED",
    "IN_USE",
    "RETURNED",
    "COMPLETED",
];

struct Reservation {
    kind: String,
    status: String,
    booth: String,
    model: String,
    start_date: String,
    end_date: String,
    space: String,
    window: (i64, i64),
}

/// A view row: status, payment status, history (JSON).
struct View {
    status: String,
    payment_status: String,
    history: String,
}

/// What the invariants are about, read once from every database.
struct World {
    /// Per service: outbox rows, and those not confirmed sent.
    outboxes: Vec<(&'static str, u64, u64)>,
    reservations: BTreeMap<String, Reservation>,
    /// Payment status by reservation.
    payments: HashMap<String, String>,
    /// Rental status and serial by reservation.
    rentals: HashMap<String, (String, String)>,
    /// Reservations a car entered for.
    with_session: HashSet<String>,
    /// Sessions opened by a gate deciding from its replica.
    replica_entries: u64,
    views: HashMap<String, View>,
    /// Units by (booth, model).
    stock: HashMap<(String, String), i64>,
    /// Spaces parking registered, reservation's catalog holds, and the view
    /// knows the lot of.
    spaces: BTreeSet<String>,
    catalog_spaces: HashSet<String>,
    space_lots: HashSet<String>,
}

impl World {
    async fn read(sources: &Sources) -> anyhow::Result<Self> {
        let mut dbs = HashMap::new();
        for (service, url) in &sources.urls {
            dbs.insert(*service, Database::connect(url.as_str()).await?);
        }
        let db = |s: &str| {
            dbs.get(s)
                .ok_or_else(|| anyhow::anyhow!("no database for {s}"))
        };
        let mut outboxes = Vec::new();
        for (service, conn) in &dbs {
            for r in rows(conn, "SELECT COUNT(*) AS n, SUM(CASE WHEN sent_at IS NULL THEN 1 ELSE 0 END) AS unsent FROM outbox").await? {
                let count = |col| u64::try_from(int(&r, col)).unwrap_or(0);
                outboxes.push((*service, count("n"), count("unsent")));
            }
        }
        let reservations = rows(
            db("reservation")?,
            "SELECT id, kind, status, pickup_booth, device_model, start_date, end_date, space_id, window_start, window_end FROM reservations",
        )
        .await?
        .iter()
        .map(|r| {
            (
                text(r, "id"),
                Reservation {
                    kind: text(r, "kind"),
                    status: text(r, "status"),
                    booth: text(r, "pickup_booth"),
                    model: text(r, "device_model"),
                    start_date: text(r, "start_date"),
                    end_date: text(r, "end_date"),
                    space: text(r, "space_id"),
                    window: (int(r, "window_start"), int(r, "window_end")),
                },
            )
        })
        .collect();
        let payments = rows(
            db("payment")?,
            "SELECT reservation_id, status FROM payments",
        )
        .await?
        .iter()
        .map(|r| (text(r, "reservation_id"), text(r, "status")))
        .collect();
        let rentals = rows(
            db("rental")?,
            "SELECT reservation_id, status, serial FROM rentals",
        )
        .await?
        .iter()
        .map(|r| {
            (
                text(r, "reservation_id"),
                (text(r, "status"), text(r, "serial")),
            )
        })
        .collect();
        let with_session = rows(db("parking")?, "SELECT reservation_id FROM sessions")
            .await?
            .iter()
            .map(|r| text(r, "reservation_id"))
            .collect();
        let replica_entries = rows(
            db("parking")?,
            "SELECT COUNT(*) AS n FROM sessions WHERE verification = 'REPLICA'",
        )
        .await?
        .first()
        .map_or(0, |r| u64::try_from(int(r, "n")).unwrap_or(0));
        let views = rows(
            db("view")?,
            "SELECT reservation_id, status, payment_status, history FROM reservation_views",
        )
        .await?
        .iter()
        .map(|r| {
            (
                text(r, "reservation_id"),
                View {
                    status: text(r, "status"),
                    payment_status: text(r, "payment_status"),
                    history: text(r, "history"),
                },
            )
        })
        .collect();
        let stock = rows(
            db("reservation")?,
            "SELECT booth, device_model, units FROM stock",
        )
        .await?
        .iter()
        .map(|r| ((text(r, "booth"), text(r, "device_model")), int(r, "units")))
        .collect();
        let ids = |rows: Vec<QueryResult>| -> Vec<String> {
            rows.iter().map(|r| text(r, "space_id")).collect()
        };
        let spaces = ids(rows(db("parking")?, "SELECT space_id FROM spaces").await?)
            .into_iter()
            .collect();
        let catalog_spaces =
            ids(rows(db("reservation")?, "SELECT space_id FROM catalog_spaces").await?)
                .into_iter()
                .collect();
        let space_lots = ids(rows(db("view")?, "SELECT space_id FROM space_lots").await?)
            .into_iter()
            .collect();
        Ok(Self {
            outboxes,
            reservations,
            payments,
            rentals,
            with_session,
            replica_entries,
            views,
            stock,
            spaces,
            catalog_spaces,
            space_lots,
        })
    }

    /// The reservations past their claim (a `PENDING_PAYMENT` one waits for
    /// its payment or the sweep: nothing about it is due yet).
    fn decided(&self) -> impl Iterator<Item = (&String, &Reservation)> {
        self.reservations
            .iter()
            .filter(|(_, r)| r.status != "PENDING_PAYMENT")
    }

    fn payment(&self, id: &str) -> Option<&str> {
        self.payments.get(id).map(String::as_str)
    }

    fn rental(&self, id: &str) -> Option<&str> {
        self.rentals.get(id).map(|(s, _)| s.as_str())
    }
}

/// Reads every database once and checks every invariant.
pub async fn check(sources: &Sources) -> anyhow::Result<Report> {
    let world = World::read(sources).await?;
    Ok(Report {
        events: world.outboxes.iter().map(|(_, n, _)| n).sum(),
        unsent: world.outboxes.iter().map(|(_, _, u)| u).sum(),
        unsent_by: every_change_published(&world),
        lost: no_event_lost(&world),
        twice: no_effect_twice(&world),
        violations: [
            no_unpaid_reservation(&world),
            no_overbooking(&world),
            one_decision(&world),
        ]
        .concat(),
        pending: u64::try_from(world.reservations.len() - world.decided().count())
            .unwrap_or(u64::MAX),
        replica_entries: world.replica_entries,
    })
}

/// Invariant 1: every paid reservation (`RESERVED` .. `COMPLETED`) has a
/// captured payment. (A capture left standing on a rejected or canceled one
/// is an effect still on its way: [`no_event_lost`].)
fn no_unpaid_reservation(world: &World) -> Vec<String> {
    world
        .decided()
        .filter_map(|(id, r)| {
            let payment = world.payment(id);
            (PAID.contains(&r.status.as_str()) && payment != Some("CAPTURED"))
                .then(|| format!("{id} is {} with payment {payment:?}", r.status))
        })
        .collect()
}

/// Invariant 2: per (booth, model, day) the holding reservations are at most
/// the booth's stock; no two holding windows of a space overlap.
fn no_overbooking(world: &World) -> Vec<String> {
    let mut found = Vec::new();
    let mut per_day: HashMap<(&String, &String, time::Date), i64> = HashMap::new();
    let mut per_space: HashMap<&String, Vec<(i64, i64)>> = HashMap::new();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    for r in world
        .reservations
        .values()
        .filter(|r| HOLDING.contains(&r.status.as_str()))
    {
        if !r.space.is_empty() {
            per_space.entry(&r.space).or_default().push(r.window);
        } else if let (Ok(start), Ok(end)) = (
            time::Date::parse(&r.start_date, &format),
            time::Date::parse(&r.end_date, &format),
        ) {
            let mut day = start;
            while day <= end {
                *per_day.entry((&r.booth, &r.model, day)).or_default() += 1;
                match day.next_day() {
                    Some(next) => day = next,
                    None => break,
                }
            }
        }
    }
    for ((booth, model, day), n) in per_day {
        let units = world
            .stock
            .get(&(booth.clone(), model.clone()))
            .copied()
            .unwrap_or(0);
        if n > units {
            found.push(format!(
                "{booth} {model} on {day}: {n} held, {units} in stock"
            ));
        }
    }
    for (space, mut windows) in per_space {
        windows.sort_unstable();
        for pair in windows.windows(2) {
            if pair[1].0 < pair[0].1 {
                found.push(format!("{space}: overlapping windows {pair:?}"));
            }
        }
    }
    found
}

/// Invariant 4, every change published: every outbox row of every database
/// is confirmed sent.
fn every_change_published(world: &World) -> Vec<String> {
    world
        .outboxes
        .iter()
        .filter(|(_, _, unsent)| *unsent > 0)
        .map(|(service, _, unsent)| format!("{unsent} unsent in the {service} outbox"))
        .collect()
}

/// Invariant 4, no event lost: each effect arrived where it must. Payment
/// voids every rejection and refunds every cancel; the rental follows its
/// reservation (accepted, canceled); the view equals the reservation's status
/// and the payment's; every space parking registered is in reservation's
/// catalog and the view knows its lot (a dead letter not replayed shows here).
fn no_event_lost(world: &World) -> Vec<String> {
    let mut found = Vec::new();
    for space in &world.spaces {
        if !world.catalog_spaces.contains(space) {
            found.push(format!("space {space} never reached reservation's catalog"));
        }
        if !world.space_lots.contains(space) {
            found.push(format!("space {space}'s lot never reached the view"));
        }
    }
    for (id, r) in world.decided() {
        let status = r.status.as_str();
        let payment = world.payment(id);
        match (status, payment) {
            // The void follows the rejected event: lost until it arrives.
            ("REJECTED", Some("CAPTURED")) => {
                found.push(format!("{id} REJECTED with a capture not voided yet"));
            }
            ("CANCELED", Some("CAPTURED")) => {
                found.push(format!("{id} CANCELED but not refunded yet"));
            }
            _ => {}
        }
        if roaming(r) {
            match (status, world.rental(id)) {
                ("CANCELED", Some("ACCEPTED")) => {
                    found.push(format!("{id} canceled, rental still ACCEPTED"));
                }
                ("RESERVED" | "RENTAL_ACCEPTED" | "IN_USE" | "RETURNED" | "COMPLETED", None) => {
                    found.push(format!("{id} is {status}; rental never heard of it"));
                }
                _ => {}
            }
        }
        match world.views.get(id) {
            None if status != "REJECTED" => found.push(format!("{id} missing from the view")),
            Some(view) => {
                if view.status != status {
                    found.push(format!(
                        "{id}: view says {}, reservation {status}",
                        view.status
                    ));
                }
                if let Some(p) = payment
                    && !view.payment_status.is_empty()
                    && view.payment_status != p
                {
                    found.push(format!(
                        "{id}: view says payment {}, payment {p}",
                        view.payment_status
                    ));
                }
            }
            None => {}
        }
    }
    found
}

/// Invariant 4, no effect twice: no step twice in a view's history, no
/// device out with two rentals.
fn no_effect_twice(world: &World) -> Vec<String> {
    let mut found = Vec::new();
    for (id, _) in world.decided() {
        let Some(view) = world.views.get(id) else {
            continue;
        };
        let steps: Vec<String> = serde_json::from_str::<Vec<(String, i64)>>(&view.history)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let unique: HashSet<&String> = steps.iter().collect();
        if unique.len() != steps.len() {
            found.push(format!("{id}: view history repeats a step: {steps:?}"));
        }
    }
    let mut out: HashMap<&String, Vec<&String>> = HashMap::new();
    for (id, (status, serial)) in &world.rentals {
        if status == "HANDED_OVER" && !serial.is_empty() {
            out.entry(serial).or_default().push(id);
        }
    }
    for (serial, ids) in out {
        if ids.len() > 1 {
            found.push(format!("device {serial} handed over for {ids:?}"));
        }
    }
    found
}

/// Invariant 6, one decision: no canceled (refunded) reservation with a
/// device out or a car in, and no device out for a reservation not yet in
/// use (the hand-over and the reservation decided differently).
fn one_decision(world: &World) -> Vec<String> {
    let mut found = Vec::new();
    for (id, r) in world.decided() {
        let status = r.status.as_str();
        let rental = world.rental(id);
        let out = matches!(rental, Some("HANDED_OVER" | "RETURNED" | "RETRIEVED"));
        if status == "CANCELED" {
            if out {
                found.push(format!(
                    "{id} CANCELED (refunded) but its rental is {}",
                    rental.unwrap_or_default()
                ));
            }
            if world.with_session.contains(id) {
                found.push(format!("{id} CANCELED (refunded) but a car entered"));
            }
        }
        if roaming(r) && matches!(status, "RESERVED" | "RENTAL_ACCEPTED") && out {
            found.push(format!("{id} is {status} but its device is out"));
        }
    }
    found
}

fn roaming(r: &Reservation) -> bool {
    r.kind == "ROAMING" || r.kind == "roaming"
}

#[cfg(test)]
mod tests {
    //! The checker flags each kind of breakage: databases with only the
    //! columns it reads (the chaos run itself reads the real schemas).

    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    const SCHEMA: [(&str, &str); 5] = [
        (
            "reservation",
            "CREATE TABLE reservations (id TEXT, kind TEXT, status TEXT, pickup_booth TEXT, device_model TEXT, start_date TEXT, end_date TEXT, space_id TEXT, window_start BIGINT, window_end BIGINT);
             CREATE TABLE stock (booth TEXT, device_model TEXT, units BIGINT);
             CREATE TABLE catalog_spaces (space_id TEXT);",
        ),
        ("payment", "CREATE TABLE payments (reservation_id TEXT, status TEXT);"),
        ("rental", "CREATE TABLE rentals (reservation_id TEXT, status TEXT, serial TEXT);"),
        (
            "parking",
            "CREATE TABLE sessions (reservation_id TEXT, status TEXT, verification TEXT);
             CREATE TABLE spaces (space_id TEXT);",
        ),
        (
            "view",
            "CREATE TABLE reservation_views (reservation_id TEXT, status TEXT, payment_status TEXT, history TEXT);
             CREATE TABLE space_lots (space_id TEXT);",
        ),
    ];

    /// Five SQLite files holding one consistent roaming reservation in use,
    /// with `break_it` applied as extra SQL per service.
    async fn world(break_it: &[(&str, &str)]) -> (Sources, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("chaos-check-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut urls = BTreeMap::new();
        for (service, schema) in SCHEMA {
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("{service}.db")).display()
            );
            let db = Database::connect(url.as_str()).await.unwrap();
            let base = match service {
                "reservation" => "INSERT INTO reservations VALUES ('r1', 'ROAMING', 'IN_USE', 'ICN-T1', 'egg-lte', '2026-12-02', '2026-12-03', NULL, NULL, NULL);
                                  INSERT INTO stock VALUES ('ICN-T1', 'egg-lte', 1);
                                  INSERT INTO catalog_spaces VALUES ('S1');",
                "payment" => "INSERT INTO payments VALUES ('r1', 'CAPTURED');",
                "rental" => "INSERT INTO rentals VALUES ('r1', 'HANDED_OVER', 'E1');",
                "parking" => "INSERT INTO spaces VALUES ('S1');",
                _ => "INSERT INTO reservation_views VALUES ('r1', 'IN_USE', 'CAPTURED', '[[\"RESERVED\",1],[\"RENTAL_ACCEPTED\",2],[\"IN_USE\",3]]');
                      INSERT INTO space_lots VALUES ('S1');",
            };
            db.execute_unprepared(&format!(
                "{schema} CREATE TABLE outbox (sent_at BIGINT); {base}"
            ))
            .await
            .unwrap();
            for (s, sql) in break_it {
                if *s == service {
                    db.execute_unprepared(sql).await.unwrap();
                }
            }
            urls.insert(service, url);
        }
        (Sources { urls }, dir)
    }

    /// What to break, as SQL per service, and how the report must show it.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        fn(&Report) -> bool,
    );

    #[tokio::test]
    async fn a_consistent_world_passes_and_every_breakage_is_caught() {
        let (sources, dir) = world(&[]).await;
        let report = check(&sources).await.unwrap();
        assert!(
            report.violations.is_empty() && report.lost.is_empty() && report.twice.is_empty(),
            "{report:?}"
        );
        let _ = std::fs::remove_dir_all(dir);

        let cases: [Case; 10] = [
            (
                "a space registration dead-lettered by the view",
                &[("view", "DELETE FROM space_lots")],
                |r| {
                    r.lost
                        .iter()
                        .any(|l| l.contains("lot never reached the view"))
                },
            ),
            (
                "a space registration dead-lettered by reservation",
                &[("reservation", "DELETE FROM catalog_spaces")],
                |r| r.lost.iter().any(|l| l.contains("reservation's catalog")),
            ),
            (
                "unpaid but in use",
                &[("payment", "UPDATE payments SET status = 'DECLINED'")],
                |r| !r.violations.is_empty(),
            ),
            (
                "refunded with the device out",
                &[
                    ("reservation", "UPDATE reservations SET status = 'CANCELED'"),
                    ("payment", "UPDATE payments SET status = 'REFUNDED'"),
                    (
                        "view",
                        "UPDATE reservation_views SET status = 'CANCELED', payment_status = 'REFUNDED'",
                    ),
                ],
                |r| !r.violations.is_empty(),
            ),
            (
                "refunded with a car inside",
                &[
                    (
                        "reservation",
                        "INSERT INTO reservations VALUES ('p1', 'PARKING', 'CANCELED', NULL, NULL, NULL, NULL, 'S1', 0, 10)",
                    ),
                    ("payment", "INSERT INTO payments VALUES ('p1', 'REFUNDED')"),
                    (
                        "parking",
                        "INSERT INTO sessions VALUES ('p1', 'STARTED', 'ONLINE')",
                    ),
                    (
                        "view",
                        "INSERT INTO reservation_views VALUES ('p1', 'CANCELED', 'REFUNDED', '[]')",
                    ),
                ],
                |r| !r.violations.is_empty(),
            ),
            (
                "overbooked day",
                &[
                    (
                        "reservation",
                        "INSERT INTO reservations VALUES ('r2', 'ROAMING', 'RESERVED', 'ICN-T1', 'egg-lte', '2026-12-03', '2026-12-04', NULL, NULL, NULL)",
                    ),
                    ("payment", "INSERT INTO payments VALUES ('r2', 'CAPTURED')"),
                    (
                        "rental",
                        "INSERT INTO rentals VALUES ('r2', 'ACCEPTED', NULL)",
                    ),
                    (
                        "view",
                        "INSERT INTO reservation_views VALUES ('r2', 'RESERVED', 'CAPTURED', '[]')",
                    ),
                ],
                |r| r.violations.iter().any(|v| v.contains("in stock")),
            ),
            (
                "an unsent event",
                &[("payment", "INSERT INTO outbox VALUES (NULL)")],
                |r| r.unsent == 1,
            ),
            (
                "the view behind",
                &[("view", "UPDATE reservation_views SET status = 'RESERVED'")],
                |r| !r.lost.is_empty(),
            ),
            (
                "a step applied twice",
                &[(
                    "view",
                    "UPDATE reservation_views SET history = '[[\"RESERVED\",1],[\"RESERVED\",2],[\"IN_USE\",3]]'",
                )],
                |r| !r.twice.is_empty(),
            ),
            (
                "a cancel never reached payment",
                &[
                    ("reservation", "UPDATE reservations SET status = 'CANCELED'"),
                    ("rental", "UPDATE rentals SET status = 'CANCELED'"),
                    ("view", "UPDATE reservation_views SET status = 'CANCELED'"),
                ],
                |r| !r.lost.is_empty(),
            ),
        ];
        for (what, sql, caught) in cases {
            let (sources, dir) = world(sql).await;
            let report = check(&sources).await.unwrap();
            assert!(caught(&report), "{what}: {report:?}");
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
