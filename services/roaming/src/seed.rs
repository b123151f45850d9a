//! What a new mesh starts with (DOMAIN.md, "The demo catalog"): the price list, which
//! belongs to the reservation service and is written at its first start, and
//! the demo booths, devices and parking spaces `roaming up` seeds in a new
//! data directory.

use std::time::Duration;

use adapters_store::reservation::ReservationStore;
use domain_kernel::{BoothCode, DeviceModel, Money, Principal, Serial, Violations};
use domain_parking::Space;
use domain_reservation::ports::Catalog;
use tracing::info;

use crate::parking::Parkings;
use crate::rental::Rentals;

/// The price list of DOMAIN.md's demo catalog, written when the catalog has none:
/// pricing belongs to the reservation service, not to the client.
pub async fn ensure_price_list(store: &ReservationStore) -> anyhow::Result<()> {
    use domain_kernel::{CountryCode, DeviceModel};
    use domain_reservation::ports::Catalog;
    use domain_reservation::pricing::DeviceOffer;
    let parse = |e: &dyn std::fmt::Display| anyhow::anyhow!("price list: {e}");
    for (model, rate, countries) in [
        ("egg-lte", 5_000, ["JP", "US", "CN", "VN", "TH"]),
        ("phone-5g", 9_000, ["JP", "US", "GB", "FR", "DE"]),
    ] {
        let device_model = DeviceModel::parse(model).map_err(|e| parse(&e))?;
        if store.device_offer(&device_model).await?.is_some() {
            continue;
        }
        let offer = DeviceOffer {
            device_model,
            daily_rate: Money::krw(rate)
                .and_then(Money::as_rate)
                .map_err(|e| parse(&e))?,
            countries: countries
                .iter()
                .map(|c| CountryCode::parse(c).map_err(|e| parse(&e)))
                .collect::<Result<_, _>>()?,
        };
        store.put_device_offer(&offer).await?;
    }
    Ok(())
}

/// DOMAIN.md's demo catalog: booths and their devices, the parking lot (the price
/// list is the reservation service's own, written at its first start), then
/// waits until the reservation `catalog` has heard of them.
pub async fn demo(
    rentals: &Rentals,
    parkings: &Parkings,
    catalog: &ReservationStore,
) -> anyhow::Result<()> {
    let ops = Principal::operator("seed");
    for (booth, eggs, phones) in [("ICN-T1", 3, 2), ("ICN-T2", 2, 2), ("GMP", 2, 2)] {
        for (model, count) in [("egg-lte", eggs), ("phone-5g", phones)] {
            for n in 1..=count {
                let serial = Serial::parse(&format!("{booth}-{model}-{n}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                rentals
                    .register_device(
                        &ops,
                        serial,
                        DeviceModel::parse(model).map_err(|e| anyhow::anyhow!("{e}"))?,
                        BoothCode::parse(booth).map_err(|e| anyhow::anyhow!("{e}"))?,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("seeding device: {e}"))?;
            }
        }
    }
    for n in 1..=10u32 {
        let rate: Result<Money, Violations> =
            Money::krw(3_000).map_err(|e| Violations::one("hourly_rate", e));
        let space = Space::parse(
            &format!("P1-B1-{n:03}"),
            "P1",
            "B1",
            i32::try_from(n).unwrap_or(1),
            rate,
        )
        .map_err(|v| anyhow::anyhow!("{v}"))?;
        parkings
            .register_space(&ops, space)
            .await
            .map_err(|e| anyhow::anyhow!("seeding space: {e}"))?;
    }
    // The reservation catalog learns stock and spaces from events; wait for it.
    let last_space =
        domain_kernel::SpaceId::parse("P1-B1-010").map_err(|e| anyhow::anyhow!("{e}"))?;
    let gmp = BoothCode::parse("GMP").map_err(|e| anyhow::anyhow!("{e}"))?;
    for _ in 0..200 {
        if catalog.space_offer(&last_space).await?.is_some() && catalog.booth_exists(&gmp).await? {
            info!("demo catalog seeded");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the reservation catalog did not receive the seeded stock in 10 s")
}
