use domain_kernel::{
    BoothCode, Clock, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, Principal,
    Recorded, ReservationId, Role, Serial, StoreError,
};
use time::Date;

use crate::model::{Device, Rental, RentalData, RentalEvent, RentalStatus, Rule};
use crate::ports::{
    Changes, InsertError, RentalRepository, ReservationAuthority, SaveError, UseRefused,
};

const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RentalError {
    /// The caller's role or booth does not allow this.
    #[error("not permitted")]
    Forbidden,
    /// No such rental, or not one the caller may see.
    #[error("rental not found")]
    NotFound,
    #[error("device {0} not found")]
    DeviceNotFound(Serial),
    #[error("device {0} is already registered")]
    DeviceExists(Serial),
    /// Not on the reservation service's price list: nobody could reserve it.
    #[error("device model {0} is not in the catalog")]
    UnknownModel(DeviceModel),
    #[error("{0}")]
    Refused(#[from] Rule),
    #[error("rental is busy, try again")]
    Busy,
    /// The customer canceled the reservation first: the device stays.
    #[error("the reservation was canceled")]
    ReservationCanceled,
    /// The reservation service does not hold it as reserved.
    #[error("the reservation is not reserved")]
    ReservationNotReserved,
    /// The reservation service could not be asked; nothing changed.
    #[error("the reservation service is unavailable; try again")]
    ReservationUnavailable { retry_after: std::time::Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What handling an inbound event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    Applied,
    Duplicate,
    Ignored,
}

/// A roaming reservation as the reservation events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoamingReservation {
    pub reservation_id: ReservationId,
    pub customer_id: CustomerId,
    pub device_model: DeviceModel,
    pub country: CountryCode,
    pub pickup_booth: BoothCode,
    pub return_booth: BoothCode,
    pub dates: DateRange,
}

impl From<UseRefused> for RentalError {
    fn from(refusal: UseRefused) -> Self {
        match refusal {
            UseRefused::Canceled => Self::ReservationCanceled,
            UseRefused::NotReserved => Self::ReservationNotReserved,
            UseRefused::Unavailable { retry_after } => Self::ReservationUnavailable { retry_after },
        }
    }
}

/// The rental use cases.
#[derive(Debug)]
pub struct RentalService<R, A, K, I> {
    repo: R,
    reservations: A,
    clock: K,
    ids: I,
}

impl<R, A, K, I> RentalService<R, A, K, I>
where
    R: RentalRepository,
    A: ReservationAuthority,
    K: Clock,
    I: IdGenerator,
{
    /// `reservations` is asked before every hand-over commits.
    pub fn new(repo: R, reservations: A, clock: K, ids: I) -> Self {
        Self {
            repo,
            reservations,
            clock,
            ids,
        }
    }

    pub fn repository(&self) -> &R {
        &self.repo
    }

    /// Adds a device to a booth's stock (that booth's staff, operators), of a
    /// model the reservation service offers.
    pub async fn register_device(
        &self,
        principal: &Principal,
        serial: Serial,
        model: DeviceModel,
        booth: BoothCode,
    ) -> Result<Device, RentalError> {
        if !principal.acts_for_booth(&booth) {
            return Err(RentalError::Forbidden);
        }
        match self.reservations.offers_model(&model).await {
            Ok(true) => {}
            Ok(false) => return Err(RentalError::UnknownModel(model)),
            Err(e) => {
                return Err(RentalError::ReservationUnavailable {
                    retry_after: e.retry_after,
                });
            }
        }
        let device = Device::new(serial.clone(), model, booth);
        let events = Recorded::all(
            &self.clock,
            &self.ids,
            [RentalEvent::DeviceRegistered(device.clone())],
        );
        match self.repo.insert_device(&device, &events).await {
            Ok(()) => Ok(device),
            Err(InsertError::Duplicate) => Err(RentalError::DeviceExists(serial)),
            Err(InsertError::AlreadyHandled) => Err(StoreError::inbox_hit_without_cause().into()),
            Err(InsertError::Store(e)) => Err(e.into()),
        }
    }

    /// Devices at a booth (its staff, operators); every booth for operators only.
    /// Staff asking without a booth get their own.
    pub async fn list_devices(
        &self,
        principal: &Principal,
        booth: Option<BoothCode>,
        model: Option<DeviceModel>,
    ) -> Result<Vec<Device>, RentalError> {
        let booth = booth.or_else(|| principal.booth().cloned());
        match &booth {
            Some(b) if !principal.acts_for_booth(b) => return Err(RentalError::Forbidden),
            None if !principal.is_operator() => return Err(RentalError::Forbidden),
            _ => {}
        }
        Ok(self
            .repo
            .list_devices(booth.as_ref(), model.as_ref())
            .await?)
    }

    /// Rentals that involve a booth (its staff, operators).
    pub async fn list_booth_rentals(
        &self,
        principal: &Principal,
        booth: BoothCode,
        date: Option<Date>,
    ) -> Result<Vec<Rental>, RentalError> {
        if !principal.acts_for_booth(&booth) {
            return Err(RentalError::Forbidden);
        }
        Ok(self.repo.list_booth_rentals(&booth, date).await?)
    }

    /// One rental: its customer, the staff of a booth it involves, services and
    /// operators. Anyone else gets `NotFound`.
    pub async fn get_rental(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
    ) -> Result<Rental, RentalError> {
        let rental = self
            .repo
            .get_rental(reservation_id)
            .await?
            .ok_or(RentalError::NotFound)?;
        let staff_of_booth = principal.booth().is_some_and(|b| rental.involves_booth(b))
            && principal.has(Role::BoothStaff);
        if principal.owns_or_operates(&rental.customer_id)
            || principal.has(Role::Service)
            || staff_of_booth
        {
            Ok(rental)
        } else {
            Err(RentalError::NotFound)
        }
    }

    /// The pickup booth hands `serial` over. Everything the booth can check is
    /// checked first (status, period, model, stock); then the reservation
    /// service is asked to take the reservation into use, and only if it
    /// agreed is the hand-over committed. A canceled reservation refuses
    /// (`ReservationCanceled`); with the reservation service unreachable the
    /// booth is refused (`ReservationUnavailable`): no device leaves without
    /// the reservation's decision, and there is no override. Repeating the
    /// same hand over answers with the rental again.
    pub async fn hand_over(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
        serial: Serial,
    ) -> Result<Rental, RentalError> {
        for _ in 0..CONFLICT_RETRIES {
            let mut rental = self
                .staff_rental(principal, reservation_id, |r| &r.pickup_booth)
                .await?;
            if rental.status == RentalStatus::HandedOver && rental.serial.as_ref() == Some(&serial)
            {
                return Ok(rental);
            }
            if rental.status == RentalStatus::Canceled {
                // The cancel reached this booth first: same answer as when the
                // reservation service refuses.
                return Err(RentalError::ReservationCanceled);
            }
            let mut device = self
                .repo
                .get_device(&serial)
                .await?
                .ok_or_else(|| RentalError::DeviceNotFound(serial.clone()))?;
            let event = rental.hand_over(&mut device, self.clock.today(), self.clock.now())?;
            self.reservations.begin_use(reservation_id).await?;
            if self.save(&mut rental, &mut device, [event]).await? {
                return Ok(rental);
            }
        }
        Err(RentalError::Busy)
    }

    /// The customer returns the device at `booth` (that booth's staff, operators).
    pub async fn return_device(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
        booth: BoothCode,
    ) -> Result<Rental, RentalError> {
        if !principal.acts_for_booth(&booth) {
            return Err(RentalError::Forbidden);
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut rental = self
                .visible_rental(principal, reservation_id, &booth)
                .await?;
            if rental.status == RentalStatus::Returned
                && rental.returned_at_booth.as_ref() == Some(&booth)
            {
                return Ok(rental);
            }
            let mut device = self.rented_device(&rental).await?;
            let event = rental.return_at(&mut device, booth.clone(), self.clock.now())?;
            if self.save(&mut rental, &mut device, [event]).await? {
                return Ok(rental);
            }
        }
        Err(RentalError::Busy)
    }

    /// The booth where the device was returned checks it into its stock.
    pub async fn retrieve(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
    ) -> Result<Rental, RentalError> {
        for _ in 0..CONFLICT_RETRIES {
            let rental = self
                .repo
                .get_rental(reservation_id)
                .await?
                .ok_or(RentalError::NotFound)?;
            if rental.status == RentalStatus::Retrieved {
                return self.get_rental(principal, reservation_id).await;
            }
            let Some(returned_at) = rental.returned_at_booth.clone() else {
                if !principal.may(&[Role::BoothStaff]) {
                    return Err(RentalError::Forbidden);
                }
                return Err(Rule::WrongStatus {
                    status: rental.status,
                    action: "retrieve",
                }
                .into());
            };
            if !principal.acts_for_booth(&returned_at) {
                return Err(RentalError::Forbidden);
            }
            let mut rental = rental;
            let mut device = self.rented_device(&rental).await?;
            let events = rental.retrieve(&mut device, self.clock.now())?;
            if self.save(&mut rental, &mut device, events).await? {
                return Ok(rental);
            }
        }
        Err(RentalError::Busy)
    }

    /// `roaming.reservation.reserved` (roaming): accept the rental.
    pub async fn handle_reserved(
        &self,
        event: &Recorded<RoamingReservation>,
    ) -> Result<HandleOutcome, StoreError> {
        if self
            .repo
            .get_rental(event.event.reservation_id)
            .await?
            .is_some()
        {
            return Ok(HandleOutcome::Ignored);
        }
        let (rental, accepted) = Rental::accept(self.rental_data(&event.event));
        match self
            .repo
            .insert_rental(
                &rental,
                &Recorded::all(&self.clock, &self.ids, [accepted]),
                Some(event.event_id),
            )
            .await
        {
            Ok(()) => Ok(HandleOutcome::Applied),
            Err(InsertError::Duplicate) => Ok(HandleOutcome::Ignored),
            Err(InsertError::AlreadyHandled) => Ok(HandleOutcome::Duplicate),
            Err(InsertError::Store(e)) => Err(e),
        }
    }

    /// `roaming.reservation.canceled` (roaming): cancel a rental not yet handed
    /// over; remember a cancel that overtook its reservation.
    pub async fn handle_canceled(
        &self,
        event: &Recorded<RoamingReservation>,
    ) -> Result<HandleOutcome, StoreError> {
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut rental) = self.repo.get_rental(event.event.reservation_id).await? else {
                let tombstone = Rental::canceled_in_advance(self.rental_data(&event.event));
                match self
                    .repo
                    .insert_rental(&tombstone, &[], Some(event.event_id))
                    .await
                {
                    Ok(()) => return Ok(HandleOutcome::Applied),
                    Err(InsertError::Duplicate) => continue,
                    Err(InsertError::AlreadyHandled) => return Ok(HandleOutcome::Duplicate),
                    Err(InsertError::Store(e)) => return Err(e),
                }
            };
            let Ok(canceled) = rental.cancel(self.clock.now()) else {
                // Already canceled. (Handed over cannot be: a hand-over commits
                // only after the reservation service took the reservation into
                // use, after which it cannot be canceled.)
                return Ok(HandleOutcome::Ignored);
            };
            let changes = Changes {
                rental: Some(&mut rental),
                device: None,
                events: Recorded::all(&self.clock, &self.ids, [canceled]),
                caused_by: Some(event.event_id),
            };
            match self.repo.save(changes).await {
                Ok(()) => return Ok(HandleOutcome::Applied),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => return Ok(HandleOutcome::Duplicate),
                Err(SaveError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Contention("one rental"))
    }

    fn rental_data(&self, r: &RoamingReservation) -> RentalData {
        let now = self.clock.now();
        RentalData {
            reservation_id: r.reservation_id,
            customer_id: r.customer_id.clone(),
            device_model: r.device_model.clone(),
            country: r.country.clone(),
            pickup_booth: r.pickup_booth.clone(),
            return_booth: r.return_booth.clone(),
            dates: r.dates,
            status: RentalStatus::Accepted,
            serial: None,
            returned_at_booth: None,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// The rental, if the caller acts for the booth `booth_of` picks out of it.
    async fn staff_rental(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
        booth_of: fn(&Rental) -> &BoothCode,
    ) -> Result<Rental, RentalError> {
        let rental = self
            .repo
            .get_rental(reservation_id)
            .await?
            .ok_or(RentalError::NotFound)?;
        if principal.acts_for_booth(booth_of(&rental)) {
            Ok(rental)
        } else if principal.has(Role::BoothStaff) {
            Err(RentalError::Forbidden)
        } else {
            Err(RentalError::NotFound)
        }
    }

    async fn visible_rental(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
        booth: &BoothCode,
    ) -> Result<Rental, RentalError> {
        let rental = self
            .repo
            .get_rental(reservation_id)
            .await?
            .ok_or(RentalError::NotFound)?;
        if principal.acts_for_booth(booth) {
            Ok(rental)
        } else {
            Err(RentalError::Forbidden)
        }
    }

    async fn rented_device(&self, rental: &Rental) -> Result<Device, RentalError> {
        let Some(serial) = rental.serial.clone() else {
            return Err(Rule::WrongStatus {
                status: rental.status,
                action: "return or retrieve",
            }
            .into());
        };
        self.repo
            .get_device(&serial)
            .await?
            .ok_or(RentalError::DeviceNotFound(serial))
    }

    /// `Ok(false)` on a version conflict (reload and retry).
    async fn save(
        &self,
        rental: &mut Rental,
        device: &mut Device,
        events: impl IntoIterator<Item = RentalEvent>,
    ) -> Result<bool, RentalError> {
        let changes = Changes {
            rental: Some(rental),
            device: Some(device),
            events: Recorded::all(&self.clock, &self.ids, events),
            caused_by: None,
        };
        match self.repo.save(changes).await {
            Ok(()) => Ok(true),
            Err(SaveError::Conflict) => Ok(false),
            Err(SaveError::AlreadyHandled) => Err(StoreError::inbox_hit_without_cause().into()),
            Err(SaveError::Store(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
