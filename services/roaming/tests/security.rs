//! The edge (issue 5; DOMAIN.md, "Roles and what each may do"): tokens,
//! per-object authorization, limits. Each refusal asserts the exact status,
//! through the gateway and on the services' own ports.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adapters_auth::{Audience, Claims, Issuer, SigningKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proto::auth::IssueTokenRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::reservation::ReservationStatus as S;
use proto::{parking as pk, payment as pp, rental as pr, reservation as pb, view as pv};
use support::*;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Claims {
    Claims {
        iss: "roaming-gateway".into(),
        aud: "roaming-mesh".into(),
        sub: "alice".into(),
        exp: now() + 600,
        nbf: now(),
        iat: now(),
        roles: vec!["customer".into()],
        booth: None,
        lot: None,
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Every token the acceptance list names as bad, with what makes it bad.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let issuer = &test_key().1;
    let kid = issuer.key().kid().to_owned();
    let body = b64(serde_json::to_string(&claims()).unwrap().as_bytes());
    let valid = issuer.sign(&claims()).unwrap();

    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    // HS256 keyed with the public key: the classic algorithm-confusion attack.
    let public_bytes = URL_SAFE_NO_PAD.decode(issuer.key().public_x()).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public_bytes),
    )
    .unwrap();
    // Signed by another key that claims to be ours.
    let stranger = Issuer::new(
        SigningKey::generate().unwrap(),
        Audience::default(),
        Duration::from_mins(10),
    );
    let foreign = stranger.sign(&claims()).unwrap();
    let (_, foreign_rest) = foreign.split_once('.').unwrap();
    let (valid_header, _) = valid.split_once('.').unwrap();
    let wrong_signature = format!("{valid_header}.{foreign_rest}");
    let tampered = {
        let mut c = claims();
        c.roles = vec!["operator".into()];
        let (h, rest) = valid.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        format!(
            "{h}.{}.{sig}",
            b64(serde_json::to_string(&c).unwrap().as_bytes())
        )
    };
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims();
        f(&mut c);
        issuer.sign(&c).unwrap()
    };
    vec![
        ("malformed", "not.a.jwt".to_owned()),
        ("garbage", "abc".to_owned()),
        ("alg none", format!("{none_header}.{body}.")),
        ("HS256 with the public key", hs256),
        ("signed by another key", wrong_signature),
        ("claims changed after signing", tampered),
        ("wrong aud", with(&|c| c.aud = "someone-else".into())),
        ("wrong iss", with(&|c| c.iss = "evil-issuer".into())),
        (
            "expired",
            with(&|c| {
                c.exp = now() - 120;
                c.nbf = now() - 600;
            }),
        ),
        ("nbf in the future", with(&|c| c.nbf = now() + 600)),
    ]
}

async fn list_mine(
    view: &Channel,
    request: Request<pv::ListMyReservationsRequest>,
) -> Result<(), Status> {
    proto::view::view_service_client::ViewServiceClient::new(view.clone())
        .list_my_reservations(request)
        .await
        .map(|_| ())
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_are_unauthenticated_at_the_gateway_and_at_every_service() {
    let m = TestMesh::start().await;
    let gateway = connect(m.addrs().view).await;
    let direct = connect(m.direct().view).await;
    for channel in [&gateway, &direct] {
        // The good token works, so the refusals below are about the token.
        list_mine(
            channel,
            req(ALICE, pv::ListMyReservationsRequest::default()),
        )
        .await
        .unwrap();
        let none = list_mine(
            channel,
            Request::new(pv::ListMyReservationsRequest::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (none.code(), reason(&none)),
            (Code::Unauthenticated, "TOKEN_MISSING".to_owned())
        );
        for (what, token) in bad_tokens() {
            let e = list_mine(
                channel,
                with_token(&token, pv::ListMyReservationsRequest::default()),
            )
            .await
            .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
            assert!(
                !e.message().contains(&token),
                "{what}: the token is not echoed"
            );
        }
    }
    // The exact reasons, once.
    let reasons: Vec<String> = {
        let mut out = Vec::new();
        for (_, token) in bad_tokens() {
            let e = list_mine(
                &direct,
                with_token(&token, pv::ListMyReservationsRequest::default()),
            )
            .await
            .unwrap_err();
            out.push(reason(&e));
        }
        out
    };
    assert_eq!(
        reasons,
        [
            "TOKEN_MALFORMED",
            "TOKEN_MALFORMED",
            "TOKEN_MALFORMED",
            "TOKEN_ALGORITHM",
            "TOKEN_SIGNATURE",
            "TOKEN_SIGNATURE",
            "TOKEN_AUDIENCE",
            "TOKEN_ISSUER",
            "TOKEN_EXPIRED",
            "TOKEN_NOT_YET_VALID",
        ]
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_port_refuses_calls_without_a_token_and_ignores_development_headers() {
    let m = TestMesh::start().await;
    let d = m.direct();
    let mut results: Vec<(&str, Status)> = Vec::new();
    let id = "01890000-0000-7000-8000-000000000000".to_owned();
    for with_dev_headers in [true, false] {
        // Nothing but the headers the development seam used to trust.
        fn bare<T>(message: T, with_dev_headers: bool) -> Request<T> {
            let mut r = Request::new(message);
            if with_dev_headers {
                for (k, v) in [("x-dev-subject", "ops"), ("x-dev-roles", "operator")] {
                    r.metadata_mut().insert(k, v.parse().unwrap());
                }
            }
            r
        }
        let h = with_dev_headers;
        let get = pb::GetReservationRequest {
            reservation_id: id.clone(),
        };
        let payment = pp::GetPaymentRequest {
            reservation_id: id.clone(),
        };
        results.push((
            "reservation",
            d.reservation()
                .await
                .get_reservation(bare(get, h))
                .await
                .unwrap_err(),
        ));
        results.push((
            "payment",
            d.payment()
                .await
                .get_payment(bare(payment, h))
                .await
                .unwrap_err(),
        ));
        let devices = pr::ListDevicesRequest::default();
        results.push((
            "rental",
            d.rental()
                .await
                .list_devices(bare(devices, h))
                .await
                .unwrap_err(),
        ));
        let spaces = pk::ListSpacesRequest::default();
        results.push((
            "parking",
            d.parking()
                .await
                .list_spaces(bare(spaces, h))
                .await
                .unwrap_err(),
        ));
        let mine = pv::ListMyReservationsRequest::default();
        results.push((
            "view",
            d.view()
                .await
                .list_my_reservations(bare(mine, h))
                .await
                .unwrap_err(),
        ));
    }
    assert_eq!(results.len(), 10);
    for (service, e) in results {
        assert_eq!(
            (e.code(), reason(&e)),
            (Code::Unauthenticated, "TOKEN_MISSING".to_owned()),
            "{service}"
        );
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_see_only_their_own_and_roles_bound_what_one_may_call() {
    let m = TestMesh::start().await;
    let c = m.addrs();
    let mut reservations = c.reservation().await;
    let mine = reservations
        .reserve_roaming(req(ALICE, roaming_request("sec-1", 3, 4)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let id = mine.reservation_id.clone();
    view_reaches(&m, ALICE, &id, S::RentalAccepted).await;

    // Bob: every way of looking at Alice's reservation answers NOT_FOUND.
    let get = reservations
        .get_reservation(req(
            BOB,
            pb::GetReservationRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    let cancel = reservations
        .cancel_reservation(req(
            BOB,
            pb::CancelReservationRequest {
                reservation_id: id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    let mut view = c.view().await;
    let read = view
        .get_reservation_view(req(
            BOB,
            pv::GetReservationViewRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    let watch = match view
        .watch_reservation(req(
            BOB,
            pv::WatchReservationRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
    {
        Err(e) => e,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    };
    for (what, e) in [
        ("get", get),
        ("cancel", cancel),
        ("view", read),
        ("watch", watch),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{what}: {e:?}");
    }
    // ... and Alice's is untouched and hers.
    let still = reservations
        .get_reservation(req(
            ALICE,
            pb::GetReservationRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(
        still.status,
        S::RentalAccepted as i32,
        "not canceled by Bob"
    );

    // A customer may not pay, register devices or open the gate.
    let pay = c
        .payment()
        .await
        .pay(req(
            ALICE,
            pp::PayRequest {
                reservation_id: id.clone(),
                amount: Some(proto::common::Money {
                    currency_code: "KRW".into(),
                    minor_units: 5_000,
                }),
                card: Some(card()),
            },
        ))
        .await
        .unwrap_err();
    let register = c
        .rental()
        .await
        .register_device(req(
            ALICE,
            pr::RegisterDeviceRequest {
                serial: "ICN-T1-egg-lte-99".into(),
                device_model: "egg-lte".into(),
                booth: "ICN-T1".into(),
            },
        ))
        .await
        .unwrap_err();
    let enter = c
        .parking()
        .await
        .enter(req(
            ALICE,
            pk::EnterRequest {
                space_id: "P1-B1-001".into(),
                vehicle_plate: "12가3456".into(),
            },
        ))
        .await
        .unwrap_err();
    let verify = reservations
        .verify_parking_entry(req(
            ALICE,
            pb::VerifyParkingEntryRequest {
                space_id: "P1-B1-001".into(),
                vehicle_plate: "12가3456".into(),
                at: Some(ts(time::Duration::ZERO)),
            },
        ))
        .await
        .unwrap_err();
    for (what, e) in [
        ("Pay", pay),
        ("RegisterDevice", register),
        ("Enter", enter),
        ("VerifyParkingEntry", verify),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    }
    // Staff of another booth may not hand over ICN-T1's device either.
    let rentals = c
        .rental()
        .await
        .list_booth_rentals(req(
            STAFF_GMP,
            pr::ListBoothRentalsRequest {
                booth: "ICN-T1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(rentals.code(), Code::PermissionDenied);
    m.stop().await;
}

/// Issue 17, finding 7: a gate is bound to its lot (`gate-p1` opened P2 and
/// read customer ids in schedules), and nobody but the reservation service
/// takes a payment (an operator's `Pay` captured money for a reservation that
/// did not exist, and nothing would ever void it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_works_its_own_lot_only_and_only_the_reservation_service_pays() {
    let m = TestMesh::start().await;
    let p2 = "P2-B1-001";
    // A car reserved in P2 and one in P1, each request built once: the second
    // pass (direct to the services) replays the first pass's reservations,
    // which needs the very same details (a window computed again a second
    // later would be another request under a used id).
    let reserves = [
        (p2, "34나5678", "lot-p2"),
        ("P1-B1-004", "56다7890", "lot-p1"),
    ]
    .map(|(space, plate, rid)| parking_request(rid, space, plate, 0, 60));
    for c in [m.addrs(), m.direct()] {
        let mut parking = c.parking().await;
        let view = c.view().await;
        // A space in another lot, and a car reserved there and in P1.
        match parking
            .register_space(req(
                OPS,
                pk::RegisterSpaceRequest {
                    space_id: p2.into(),
                    lot: "P2".into(),
                    floor: "B1".into(),
                    number: 1,
                    hourly_rate: Some(proto::common::Money {
                        currency_code: "KRW".into(),
                        minor_units: 3_000,
                    }),
                },
            ))
            .await
        {
            Ok(_) => {}
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        }
        let reservations = c.reservation().await;
        for request in &reserves {
            eventually(
                Duration::from_secs(10),
                "the space reaches the reservation service",
                || {
                    let mut r = reservations.clone();
                    let request = request.clone();
                    async move { r.reserve_parking(req(ALICE, request)).await.ok() }
                },
            )
            .await;
        }
        let enter = parking
            .enter(req(
                GATE,
                pk::EnterRequest {
                    space_id: p2.into(),
                    vehicle_plate: "34나5678".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(enter.code(), Code::PermissionDenied, "{enter:?}");
        let exit = parking
            .exit(req(
                GATE,
                pk::ExitRequest {
                    space_id: p2.into(),
                    vehicle_plate: "34나5678".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(exit.code(), Code::PermissionDenied, "{exit:?}");
        let today = time::OffsetDateTime::now_utc().date().to_string();
        let schedule = |space: &str, who| {
            let mut view = view.clone();
            let r = req(
                who,
                pv::GetSpaceScheduleRequest {
                    space_id: space.into(),
                    date: today.clone(),
                },
            );
            async move { view.get_space_schedule(r).await }
        };
        let other_lot = schedule(p2, GATE).await.unwrap_err();
        assert_eq!(other_lot.code(), Code::PermissionDenied, "{other_lot:?}");
        // Its own lot: the plate and window, not who the customer is.
        let own = eventually(Duration::from_secs(10), "P1-B1-004 on the schedule", || {
            let fut = schedule("P1-B1-004", GATE);
            async move {
                let r = fut.await.ok()?.into_inner().reservations;
                (!r.is_empty()).then_some(r)
            }
        })
        .await;
        assert!(own.iter().all(|v| v.customer_id.is_empty()), "{own:?}");
        let ops = schedule(p2, OPS).await.unwrap().into_inner().reservations;
        assert!(ops.iter().any(|v| v.customer_id == "alice"), "{ops:?}");
        let customer = schedule(p2, ALICE).await.unwrap_err();
        assert_eq!(customer.code(), Code::PermissionDenied, "{customer:?}");

        let pay = c
            .payment()
            .await
            .pay(req(
                OPS,
                pp::PayRequest {
                    reservation_id: uuid::Uuid::now_v7().to_string(),
                    amount: Some(proto::common::Money {
                        currency_code: "KRW".into(),
                        minor_units: 5_000,
                    }),
                    card: Some(card()),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(pay.code(), Code::PermissionDenied, "{pay:?}");
    }
    m.stop().await;
}

/// Issue 17, finding 7: booth staff could stock a model the catalog does not
/// know. The rental service now asks the reservation service's price list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_of_a_model_the_catalog_does_not_offer_is_refused() {
    let m = TestMesh::start().await;
    for (c, serial) in [(m.addrs(), "GMP-DRONE-1"), (m.direct(), "GMP-DRONE-2")] {
        let offers = c
            .reservation()
            .await
            .list_device_offers(req(ALICE, pb::ListDeviceOffersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .offers;
        let models: Vec<&str> = offers.iter().map(|o| o.device_model.as_str()).collect();
        assert_eq!(models, ["egg-lte", "phone-5g"]);
        let mut rental = c.rental().await;
        let drone = rental
            .register_device(req(
                STAFF_GMP,
                pr::RegisterDeviceRequest {
                    serial: serial.into(),
                    device_model: "drone-x".into(),
                    booth: "GMP".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(drone.code(), Code::InvalidArgument, "{drone:?}");
        assert!(drone.message().contains("not in the catalog"), "{drone:?}");
        let egg = rental
            .register_device(req(
                STAFF_GMP,
                pr::RegisterDeviceRequest {
                    serial: serial.into(),
                    device_model: "egg-lte".into(),
                    booth: "GMP".into(),
                },
            ))
            .await;
        assert!(egg.is_ok(), "{egg:?}");
    }
    m.stop().await;
}

/// Issue 17: an external identity provider works without copying files. Its
/// JWKS is served on loopback; a token it signed is accepted by the gateway
/// and a service once `auth.jwks_url` points there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_providers_tokens_verify_with_keys_fetched_from_its_jwks_url() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = SigningKey::generate().unwrap();
    let document = serde_json::json!({ "keys": [idp.public_jwk().unwrap()] }).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = document.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    let m = TestMesh::start_with(|s| s.auth.jwks_url = Some(url)).await;
    let token = Issuer::new(idp, Audience::default(), Duration::from_mins(5))
        .issue(&ALICE.principal())
        .unwrap();
    for c in [m.addrs(), m.direct()] {
        let view = c.view().await;
        eventually(Duration::from_secs(10), "the provider's keys", || {
            let mut view = view.clone();
            let r = with_token(&token, pv::ListMyReservationsRequest::default());
            async move { view.list_my_reservations(r).await.ok() }
        })
        .await;
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let m = TestMesh::start().await;
    let mut big = roaming_request("big", 3, 4);
    big.payment.as_mut().unwrap().holder_name = "x".repeat(100 * 1024);
    let e = m
        .addrs()
        .reservation()
        .await
        .reserve_roaming(req(ALICE, big.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE".to_owned()),
        "{e:?}"
    );
    // The service's own limit holds for direct calls, with the same answer
    // (its request-body check, before tonic's own OUT_OF_RANGE).
    let e = m
        .direct()
        .reservation()
        .await
        .reserve_roaming(req(ALICE, big))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE".to_owned()),
        "{e:?}"
    );
    // Nothing was reserved.
    let listed = m
        .view()
        .await
        .list_my_reservations(req(ALICE, pv::ListMyReservationsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .reservations;
    assert!(listed.is_empty());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_the_rate_limit_is_resource_exhausted_with_retry_info() {
    let m = TestMesh::start_with(|s| {
        s.gateway.rate_per_second = 2;
        s.gateway.burst = 10;
    })
    .await;
    let mut view = m.addrs().view().await;
    // Within the limit: every call succeeds.
    for i in 0..10 {
        view.list_my_reservations(req(ALICE, pv::ListMyReservationsRequest::default()))
            .await
            .unwrap_or_else(|e| panic!("call {i} within the burst: {e:?}"));
    }
    // Over it: refused with a retry hint, for this principal only.
    let mut refused = 0;
    for _ in 0..5 {
        if let Err(e) = view
            .list_my_reservations(req(ALICE, pv::ListMyReservationsRequest::default()))
            .await
        {
            assert_eq!(
                (e.code(), reason(&e)),
                (Code::ResourceExhausted, "RATE_LIMITED".to_owned())
            );
            let delay = retry_delay(&e).expect("RetryInfo");
            assert!(
                delay > Duration::ZERO && delay <= Duration::from_millis(500),
                "{delay:?}"
            );
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "at 2/s at most one token comes back during the burst; refused {refused}"
    );
    view.list_my_reservations(req(BOB, pv::ListMyReservationsRequest::default()))
        .await
        .expect("another principal has its own budget");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_issues_tokens_for_the_demo_principals_only_with_the_right_password() {
    let m = TestMesh::start().await;
    let gateway = connect(m.addrs().view).await;
    let mut auth = AuthServiceClient::new(gateway.clone());
    let issued = auth
        .issue_token(IssueTokenRequest {
            username: "staff-icn-t1".into(),
            password: "demo".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            issued.token_type.as_str(),
            issued.expires_in,
            issued.refresh_expires_in
        ),
        ("Bearer", 900, 86_400)
    );
    // The refresh token buys a new access token at the gateway, and is no
    // bearer token anywhere.
    let refreshed = auth
        .refresh_token(proto::auth::RefreshTokenRequest {
            refresh_token: issued.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refreshed.expires_in, 900);
    let bad_refresh = auth
        .refresh_token(proto::auth::RefreshTokenRequest {
            refresh_token: issued.access_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_refresh.code(), Code::Unauthenticated, "{bad_refresh:?}");
    for addr in [m.addrs().rental, m.direct().rental] {
        let refused =
            proto::rental::rental_service_client::RentalServiceClient::new(connect(addr).await)
                .list_booth_rentals(with_token(
                    &issued.refresh_token,
                    pr::ListBoothRentalsRequest {
                        booth: "ICN-T1".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    // The token works, at the gateway and directly, and carries the booth.
    let rentals = pr::ListBoothRentalsRequest {
        booth: "ICN-T1".into(),
        ..Default::default()
    };
    for addr in [m.addrs().rental, m.direct().rental] {
        proto::rental::rental_service_client::RentalServiceClient::new(connect(addr).await)
            .list_booth_rentals(with_token(&issued.access_token, rentals.clone()))
            .await
            .unwrap();
        proto::rental::rental_service_client::RentalServiceClient::new(connect(addr).await)
            .list_booth_rentals(with_token(&refreshed.access_token, rentals.clone()))
            .await
            .unwrap();
    }
    let wrong = auth
        .issue_token(IssueTokenRequest {
            username: "alice".into(),
            password: "alice".into(),
        })
        .await
        .unwrap_err();
    let unknown = auth
        .issue_token(IssueTokenRequest {
            username: "mallory".into(),
            password: "demo".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message()),
        "no user enumeration"
    );
    assert_eq!(reason(&wrong), "BAD_CREDENTIALS");
    let empty = auth
        .issue_token(IssueTokenRequest {
            username: String::new(),
            password: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    // Aggregated reflection and health answer without a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway);
    for service in [
        "",
        proto::service_names::RESERVATION,
        proto::service_names::VIEW,
    ] {
        // The upstream mirror polls once a second: watch the entry until it
        // says SERVING (or the stream gives up).
        let mut watch = health
            .watch(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let serving = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(status) = watch.message().await.unwrap() {
                if status.status == 1 {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(serving.ok(), Some(true), "{service:?} SERVING");
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unary_calls_without_a_deadline_get_the_default_and_overload_is_shed() {
    let m = TestMesh::start_with(|s| {
        s.payment.fault_latency_ms = 1_500;
        s.call_deadline_ms = 5_000;
        s.gateway.default_deadline_ms = 300;
        s.gateway.max_concurrent_calls = 1;
    })
    .await;
    let reservations = m.addrs().reservation().await;
    // No deadline from the client: the gateway's 300 ms apply.
    let mut client = reservations.clone();
    let e = client
        .reserve_roaming(req(ALICE, roaming_request("slow-1", 3, 4)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    // A client deadline is kept as given (here longer than the default).
    let mut request = req(BOB, roaming_request("slow-2", 3, 4));
    request.set_timeout(Duration::from_secs(4));
    client
        .reserve_roaming(request)
        .await
        .expect("within the client's own deadline");

    // One unary call at a time: a second one at the same moment is shed.
    let mut slow_client = reservations.clone();
    let mut other = reservations.clone();
    let mut first = req(ALICE, roaming_request("slow-3", 5, 6));
    first.set_timeout(Duration::from_secs(4));
    let slow = tokio::spawn(async move { slow_client.reserve_roaming(first).await });
    // The slow call holds the one slot once its claim is written (it then
    // waits 1.5 s on the slowed-down payment): wait for the claim.
    let within = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        use domain_reservation::ports::ReservationRepository as _;
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let pending = m
            .mesh()
            .reservations
            .repository()
            .pending_before(later)
            .await
            .unwrap();
        if pending.iter().any(|r| r.request_id.as_str() == "slow-3") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < within,
            "the slow call's claim never appeared"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = other
        .get_reservation(req(
            ALICE,
            pb::GetReservationRequest {
                reservation_id: "x".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (shed.code(), reason(&shed)),
        (Code::Unavailable, "OVERLOADED".to_owned())
    );
    assert!(retry_delay(&shed).is_some());
    slow.await.unwrap().expect("the call in flight completes");
    m.stop().await;
}

/// Issue 32, point 4: a start that fails on its database, with a NATS URL and a
/// database URL that both carry credentials, prints neither password in its
/// whole output (stdout and stderr), while still saying what failed.
#[tokio::test]
async fn a_failing_start_prints_no_password_of_its_urls() {
    let nats = adapters_bus::testing::NatsServer::start().expect("nats-server");
    let nats_url = nats
        .url()
        .replacen("nats://", "nats://natsuser:N4tsPassw0rd@", 1);
    // Nothing listens there: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let db_url = format!("postgres://app:Pg-S3cret-Passw0rd@127.0.0.1:{port}/reservation");
    let dir = std::env::temp_dir().join(format!("roaming-secret-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_roaming"))
            .args(["serve", "reservation"])
            .env("ROAMING_NATS_URL", &nats_url)
            .env("ROAMING_RESERVATION_DATABASE_URL", &db_url)
            .env("ROAMING_DATA_DIR", dir.join("data"))
            .env("ROAMING_RESERVATION_LISTEN", "127.0.0.1:0")
            .env("ROAMING_ADMIN_LISTEN", "off")
            .env("ROAMING_AUTH_SIGNING_KEY_FILE", &test_key().0)
            .env("RUST_LOG", "debug")
            .output()
            .expect("the roaming binary")
    });
    let output = tokio::time::timeout(Duration::from_mins(1), output)
        .await
        .expect("the start fails within a minute")
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the start fails: {all}");
    assert!(
        all.contains("database postgres://app:***@127.0.0.1"),
        "the failure names the database, without its password: {all}"
    );
    for secret in ["Pg-S3cret-Passw0rd", "N4tsPassw0rd"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
    drop(nats);
}

/// Issue "Directories 0700 whatever the umask": `create_dir_all` follows the
/// umask, so under `umask 000` the data directory, its `keys/` and the TLS
/// directories were 0777, open to anyone on the machine. Here a real
/// `roaming up --tls` runs under `umask 000` (in a shell of its own: the
/// umask is the process's) in a data directory it creates under a parent
/// left 0777: every directory it makes is 0700, every private key and
/// database 0600, and no file is writable by others.
#[cfg(unix)]
#[test]
fn under_umask_000_up_keeps_its_directories_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    let parent = std::env::temp_dir().join(format!("roaming-umask-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = parent.join("data");
    let mut up = std::process::Command::new("sh");
    up.args(["-c", "umask 000 && exec \"$0\" up --tls"])
        .arg(env!("CARGO_BIN_EXE_roaming"));
    support::up_until_the_gateway_serves(up, &data, "127.0.0.1:0");

    let mut dirs = vec![];
    let mut files = vec![];
    let mut todo = vec![data.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let shown = |path: &Path| {
        let name = path.strip_prefix(&parent).unwrap().display();
        format!("{:o} {name}", mode(path))
    };
    let mut wrong: Vec<String> = dirs
        .iter()
        .chain([&data])
        .filter(|d| mode(d) != 0o700)
        .map(|d| shown(d))
        .collect();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let private = name.ends_with(".key") || name.ends_with(".pem") || name.contains(".db");
        let m = mode(file);
        if (private && m != 0o600) || m & 0o022 != 0 {
            wrong.push(shown(file));
        }
    }
    let expected = [
        data.join("keys"),
        data.join("keys").join("issuer.pem"),
        data.join("tls").join("ca.key"),
        data.join("tls").join("public").join("tls.key"),
        data.join("tls").join("reservation").join("tls.key"),
        data.join("reservation.db"),
    ];
    for path in &expected {
        assert!(path.exists(), "{} was written", path.display());
    }
    let all: Vec<String> = files.iter().chain(&dirs).map(|p| shown(p)).collect();
    assert!(
        wrong.is_empty(),
        "not owner-only: {wrong:#?}\nall: {all:#?}"
    );
    assert_eq!(
        mode(&parent),
        0o777,
        "the parent is not the mesh's to narrow"
    );
    let _ = std::fs::remove_dir_all(&parent);
}
